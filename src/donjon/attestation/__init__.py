"""donjon.attestation"""
