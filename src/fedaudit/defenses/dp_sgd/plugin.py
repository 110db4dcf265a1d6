"""DP-SGD as a defense: every client trains with Abadi et al.'s differentially private SGD
(CCS 2016, Algorithm 1) -- Poisson-sampled lots, each slice's gradient clipped to L2 norm C,
Gaussian noise of std σ·C on the lot's sum, every local step of every round -- through Opacus
(:mod:`.private`); ε per client from an RDP accountant (:mod:`.budget`).

Not a client mod: it changes how a client trains, not what it sends, so the spec names a
``local_training`` hook (the client resolves it through the catalog and hands it to
:func:`fedaudit.federation.local.train_local`) and a ``model`` entry: Opacus cannot give a
BatchNorm network per-sample gradients, so every scenario naming this defense trains the
GroupNorm UNet (``norm: group``, ``groups`` from the settings), whose synthesis quality is not
BatchNorm-identical to the baseline's.

The guarantee is sample level: the unit is one 2-D slice of a client's epoch, not a patient (a
patient contributes many slices; :mod:`.budget`)."""

from pathlib import Path

from fedaudit.catalog import DefenseSpec, NoiseFamily

DEFENSE = DefenseSpec(
    name="dp_sgd", title="DP-SGD inside the clients (Opacus)", folder=Path(__file__).parent,
    local_training=".private:local_training", model=".noise:model",
    noise=NoiseFamily(level_key="noise_multiplier", prefix="dpsgd-z", symbol="σ",
                      label="DP-SGD", figure_label="DP-SGD (GroupNorm UNet)", rank=3,
                      where="noise in every local step (sample level)", on_update=False,
                      perturb=".noise:perturb", budget=".budget:budget_fields",
                      budget_text=".budget:budget_text", budget_note=".budget:budget_note",
                      needs_history=True, reference=".noise:reference",
                      grid_help="An option (per-slice gradients make a local round ≈2.6× slower "
                      "than without DP on a CPU, benchmarks/dp_sgd_speed.py): DP-SGD "
                      "noise multipliers σ of sample-level DP-SGD inside every client "
                      "(Abadi et al. 2016, Alg. 1; Opacus), named dpsgd-z<σ>, "
                      "max_grad_norm and delta from defenses.dp_sgd. These federations "
                      "train the GroupNorm UNet (BatchNorm has no per-sample gradients), "
                      "so their utility is not BatchNorm-identical to baseline's; with "
                      "any level the grid also trains groupnorm, the same GroupNorm UNet "
                      "without DP, which the DP-SGD scenarios are compared with.",
                      note="DP-SGD (an option): every client trains with Abadi et al. 2016's "
                      "Alg. 1 through Opacus (Poisson lots at q = batch / slices in its epoch, "
                      "each slice's gradient clipped to C, N(0, (σC)²) on the lot's sum, every "
                      "local step). ε at δ = {delta} from dp-accounting's RDP accountant over "
                      "every step of every round each client ran, the largest over clients; its "
                      "unit is one 2-D slice, not a patient. The patient-level figure is the "
                      "group-privacy bound (kε, k·e^{{(k−1)ε}}·δ) over the most slices one "
                      "patient can contribute (k: every slice of its volume in all three "
                      "orientations); where that δ reaches 1 the table says there is no "
                      "meaningful patient-level guarantee. These federations train the "
                      "GroupNorm UNet (BatchNorm has no per-sample gradients), so their sCT "
                      "utility and attack numbers are read against the GroupNorm UNet trained "
                      "the baseline's way without DP (scenario groupnorm, UNet GroupNorm, "
                      "defense none), not against the BatchNorm baseline; the classifier (no "
                      "normalisation layer) is the same network."))
