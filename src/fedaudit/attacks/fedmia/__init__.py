"""FedMIA membership inference (Zhu et al. 2025; paper 000 "Membership Inference"): the
algorithm in :mod:`.algorithm`, measurement and scoring in :mod:`.evaluation`, the rules' steps
in :mod:`.steps`, its table and finding in :mod:`.report`."""
