"""Laplace gradient perturbation as a defense: each client adds i.i.d. zero-mean Laplace noise of
scale b to every coordinate of the update it sends (paper 003 §V, CPL's defense, Wei et al. 2020;
transform: :func:`fedaudit.defenses.update_noise.perturb_update`). Without clipping the update's
sensitivity is unbounded, so this gives no differential-privacy guarantee: its ε is undefined
(tables print "—")."""

from pathlib import Path

from fedaudit.catalog import DefenseSpec, NoiseFamily

DEFENSE = DefenseSpec(
    name="laplace_noise", title="Laplace update noise", folder=Path(__file__).parent,
    client_mods="fedaudit.defenses.noise_mod:client_mods",
    noise=NoiseFamily(level_key="scale", prefix="laplace-b", symbol="b", label="Laplace",
                      rank=1, perturb=".noise:perturb", update_std=".noise:update_std",
                      grid_help="Laplace scales b (units of the update; E|noise| = b), one scenario"
                      " each, named laplace-b<b> (paper 003 §V).",
                      note="Laplace: every client adds Lap(0, b) to each coordinate of the "
                      "update it sends (paper 003 §V), no clipping, so no DP guarantee (ε –)."))
