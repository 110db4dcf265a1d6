"""Test-time evasion by a malicious client (paper 004): FGSM, BIM, PGD and their transfer."""
