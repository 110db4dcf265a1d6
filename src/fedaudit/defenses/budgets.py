"""A scenario's noise defense as the tables name it, its privacy budget ε, whichever of the
noise defenses it switches on, and the UNet it trains; the tables that set the noise defenses
side by side (paper 003's privacy-utility table, the evasion attack's defense table) read them
from here.

- Laplace noise on the update (``laplace_noise``): no clipping, so no guarantee; ε is None.
- DP-FedAvg (``dp_fedavg``, McMahan et al. 2018, Alg. 1): user-level ε over the rounds run,
  every client every round (:func:`fedaudit.defenses.dp_fedavg.budget.scenario_epsilon`).
- DP-SGD (``dp_sgd``, Abadi et al. 2016, Alg. 1): slice-level ε from the (q, steps) each client
  reported every round in the training history, the largest over clients
  (:func:`fedaudit.defenses.dp_sgd.budget.scenario_epsilon`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fedaudit.defenses.update_noise import DP_FEDAVG, DP_SGD, LAPLACE, level_of, noise_defense

NOISE_LABELS = {LAPLACE: "Laplace", DP_FEDAVG: "DP-FedAvg", DP_SGD: "DP-SGD"}
# how a level is written: Laplace scale b, DP-FedAvg's z, DP-SGD's σ
LEVEL_SYMBOLS = {LAPLACE: "b", DP_FEDAVG: "z", DP_SGD: "σ"}


def noise_level(defenses: Iterable[Mapping[str, Any]]
                ) -> tuple[str | None, float, dict[str, Any] | None]:
    """(defense name, level, its entry) of the scenario's noise defense; (None, 0.0, None)
    without one."""
    d = noise_defense(defenses)
    return (None, 0.0, None) if d is None else (d["name"], level_of(d), d)


def needs_history(defenses: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the scenario's ε is read from its training history (DP-SGD)."""
    d = noise_defense(defenses)
    return d is not None and d["name"] == DP_SGD


def scenario_epsilon(defenses: Iterable[Mapping[str, Any]], rounds: int,
                     history: Any = None) -> float | None:
    """ε at the defense's δ after ``rounds`` rounds (DP-FedAvg) or after the steps in
    ``history`` (DP-SGD, a ``history.tsv`` frame), None without a DP guarantee. A DP-SGD
    scenario without its history is an error: its ε cannot be known."""
    from fedaudit.defenses.dp_fedavg.budget import scenario_epsilon as fedavg_epsilon
    from fedaudit.defenses.dp_sgd.budget import scenario_epsilon as sgd_epsilon

    defenses = list(defenses)
    if needs_history(defenses):
        if history is None:
            raise ValueError("a DP-SGD scenario's ε needs its training history (history.tsv)")
        return sgd_epsilon(defenses, history)
    return fedavg_epsilon(defenses, rounds)


MODEL_LABELS = {"batch": "BatchNorm", "group": "GroupNorm"}


def model_label(defenses: Iterable[Mapping[str, Any]], plugins: Iterable[str] = ()) -> str:
    """The UNet a scenario trains, as the tables write it: ``BatchNorm`` (the paper's) or
    ``GroupNorm`` (DP-SGD's and its reference's), from its defenses' model hooks."""
    from fedaudit.catalog import catalog

    norm = catalog(plugins).model_changes([dict(d) for d in defenses]).get("norm", "batch")
    return MODEL_LABELS.get(norm, str(norm))
