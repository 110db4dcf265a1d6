"""Empirical privacy audit: an ε lower bound from one run (README.md in this folder)."""
