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

import numpy as np

from fedaudit.defenses.update_noise import level_of
from fedaudit.scenarios import DP_FEDAVG, DP_SGD, LAPLACE, noise_defense

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


def scenario_budget(defenses: Iterable[Mapping[str, Any]], rounds: int, history: Any = None,
                    slices_per_patient: int | None = None) -> dict[str, Any]:
    """Every ε of a scenario with its adjacency and unit, and where its noise comes from:

    - DP-FedAvg: ``epsilon`` (add/remove one hospital) and ``epsilon_replace`` (replace one
      hospital), :func:`fedaudit.defenses.dp_fedavg.budget.epsilons`;
    - DP-SGD: ``epsilon`` per 2-D slice, and the patient-level group bound over
      ``slices_per_patient`` slices (``epsilon_patient``, ``delta_patient``,
      ``patient_vacuous``), :func:`fedaudit.defenses.dp_sgd.budget.group_privacy`;
    - Laplace: no ε (no clipping);

    ``noise_source`` and ``simulation`` (:mod:`fedaudit.defenses.noise_source`): an ε of
    simulation noise is no guarantee against the server, which can regenerate that noise."""
    from fedaudit.defenses.dp_fedavg.budget import ADD_REMOVE, REPLACE_ONE, epsilons
    from fedaudit.defenses.dp_sgd.budget import group_privacy, vacuous
    from fedaudit.defenses.noise_source import is_simulation, source_of

    defenses = list(defenses)
    name, _, entry = noise_level(defenses)
    out: dict[str, Any] = {"epsilon": float("nan"), "epsilon_replace": float("nan"),
                           "epsilon_patient": float("nan"), "delta_patient": float("nan"),
                           "patient_vacuous": False, "slices_per_patient": float("nan"),
                           "noise_source": source_of(entry) if entry else "",
                           "simulation": is_simulation(entry)}
    if name == DP_FEDAVG:
        assert entry is not None
        both = epsilons(float(entry["noise_multiplier"]), rounds, float(entry["delta"]))
        out.update(epsilon=both[ADD_REMOVE], epsilon_replace=both[REPLACE_ONE])
    elif name == DP_SGD:
        assert entry is not None
        eps = scenario_epsilon(defenses, rounds, history)
        out["epsilon"] = eps
        if slices_per_patient is not None and eps is not None:
            group = group_privacy(float(eps), float(entry["delta"]), int(slices_per_patient))
            out.update(epsilon_patient=group[0], delta_patient=group[1],
                       patient_vacuous=vacuous(group), slices_per_patient=slices_per_patient)
    return out


def epsilon_text(budget: Mapping[str, Any], defense: str | None) -> str:
    """A table cell: every ε of a scenario's budget (:func:`scenario_budget`) with its unit,
    "no ε (no clipping)" for Laplace, and the simulation-noise warning where it applies."""
    from fedaudit.defenses.noise_source import SIMULATION_NOTE

    eps = float(budget.get("epsilon", float("nan")))
    if defense == LAPLACE:
        text = "no ε (no clipping)"
    elif defense == DP_FEDAVG and np.isfinite(eps):
        text = (f"{eps:.3g} add/remove one hospital · "
                f"{float(budget['epsilon_replace']):.3g} replace one hospital")
    elif defense == DP_SGD and np.isfinite(eps):
        k = budget.get("slices_per_patient", float("nan"))
        if not np.isfinite(k):
            patient = "patient: not computed"
        elif budget.get("patient_vacuous"):
            patient = f"patient (≤ {int(k)} slices): no meaningful patient-level guarantee"
        else:
            patient = (f"patient (≤ {int(k)} slices): {float(budget['epsilon_patient']):.3g} "
                       f"at δ = {float(budget['delta_patient']):.2g}")
        text = f"{eps:.3g} per slice · {patient}"
    else:
        return "–"
    return text + (f" ({SIMULATION_NOTE})" if budget.get("simulation") else "")


MODEL_LABELS = {"batch": "BatchNorm", "group": "GroupNorm"}


def model_label(defenses: Iterable[Mapping[str, Any]], plugins: Iterable[str] = ()) -> str:
    """The UNet a scenario trains, as the tables write it: ``BatchNorm`` (the paper's) or
    ``GroupNorm`` (DP-SGD's and its reference's), from its defenses' model hooks."""
    from fedaudit.catalog import catalog

    norm = catalog(plugins).model_changes([dict(d) for d in defenses]).get("norm", "batch")
    return MODEL_LABELS.get(norm, str(norm))
