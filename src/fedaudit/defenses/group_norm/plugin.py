"""The GroupNorm UNet without differential privacy, as a scenario setting: the reference that
separates what DP-SGD's noise and clipping cost from what its architecture change costs.

DP-SGD (:mod:`fedaudit.defenses.dp_sgd`) cannot train the paper's BatchNorm UNet (a per-sample
gradient is undefined under batch statistics), so its federations train the GroupNorm UNet
(Wu & He, Group Normalization, ECCV 2018; gcd(G, C) groups per layer). Compared with the
BatchNorm baseline, a DP-SGD federation's utility and attack numbers would mix the two changes.
A scenario naming this entry trains the same GroupNorm UNet with the scenario's ordinary
training and nothing else; the noise grid adds one (``groupnorm``) whenever
``scenarios.noise.dp_sgd`` has a level, with the DP-SGD scenarios' ``groups``, and compares
the DP-SGD scenarios with it.

Not a defense: it changes only the agreed model definition (``DefenseSpec.model``), no client
mod, no workflow, no local training."""

from pathlib import Path
from typing import Any

from fedaudit.catalog import DefenseSpec


def model(settings: dict[str, Any]) -> dict[str, Any]:
    """The GroupNorm UNet with ``groups`` (the model definition's ``norm``/``groups``)."""
    return {"norm": "group", "groups": int(settings["groups"])}


DEFENSE = DefenseSpec(
    name="group_norm", title="GroupNorm UNet without DP (DP-SGD's reference)",
    folder=Path(__file__).parent, model=".plugin:model")
