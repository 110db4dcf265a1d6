"""Laplace noise on each client's update (paper 003 §V, "gradient perturbation"); no DP."""
