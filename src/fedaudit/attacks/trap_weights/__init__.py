"""Trap-weight reconstruction by a malicious server (paper 002): the inserted layer's
initialisations and closed form (``imprint``), the server (``server``), one-round federations
of the real clients and their ground truth (``harness``), the scoring (``matching``), the 3-D
reassembly (``volumes3d``), the rule steps, tables and findings."""
