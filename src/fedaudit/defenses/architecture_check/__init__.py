"""The clients' architecture check against a malicious server (paper 002, "mitigations")."""
