"""The clients' weight audit of each received model (paper 002's "auditing linear layers")."""
