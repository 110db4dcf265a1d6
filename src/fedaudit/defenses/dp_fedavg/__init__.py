"""DP-FedAvg with the noise added by each client (McMahan et al. 2018, Alg. 1)."""
