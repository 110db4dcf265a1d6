"""Attacks on the federation, one module per attack (paper 000, "Experimental Scenarios").

* :mod:`fedaudit.attacks.poisoning` -- data poisoning by a malicious client (Eq. 2).
"""
