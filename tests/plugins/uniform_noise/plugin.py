"""A toy noise family registered from a test folder: every client adds i.i.d. uniform noise
U(−a, a) to each coordinate of the update it sends. Bounded noise without clipping, so no
differential-privacy guarantee.

It exists to show that a noise family is one folder (tests/test_noise_defenses.py): its spec and
family here, its transform in noise.py, its settings in schema.yaml; the grid, the client mod,
the privacy-utility table, figure and findings pick it up from the catalog."""

from pathlib import Path

from fedaudit.catalog import DefenseSpec, NoiseFamily

DEFENSE = DefenseSpec(
    name="uniform_noise", title="Uniform update noise (toy)", folder=Path(__file__).parent,
    client_mods="fedaudit.defenses.noise_mod:client_mods",
    noise=NoiseFamily(level_key="half_width", prefix="unif-a", symbol="a", label="Uniform",
                      rank=50, perturb=".noise:perturb", update_std=".noise:update_std",
                      no_budget_text="no ε (bounded noise, no clipping)",
                      note="Uniform (a toy family): every client adds U(−a, a) to each "
                      "coordinate of the update it sends, no clipping, so no DP guarantee."))
