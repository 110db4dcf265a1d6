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

from fedaudit.catalog import DefenseSpec

# What the defense changes in the agreed model definition: the GroupNorm UNet, the one its
# reference scenario trains without DP
GROUP_NORM_MODEL = "fedaudit.defenses.group_norm.plugin:model"


DEFENSE = DefenseSpec(
    name="dp_sgd", title="DP-SGD inside the clients (Opacus)", folder=Path(__file__).parent,
    local_training=".private:local_training", model=GROUP_NORM_MODEL)
