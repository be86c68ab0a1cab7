"""AWS Nitro Enclaves attestation documents: parse, chain to the pinned AWS root, appraise."""
