"""Arm CCA attestation tokens: parse, verify against a CPAK trust anchor, appraise ``[cca]``."""
