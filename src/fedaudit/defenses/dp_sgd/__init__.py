"""Sample-level DP-SGD inside every client's local training (Abadi et al. 2016, Alg. 1; Opacus)."""
