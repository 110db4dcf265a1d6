"""A scenario's noise defense as the tables name it, its privacy budget ε, whichever noise
family it switches on, and the UNet it trains; the tables that set the noise defenses side by
side (paper 003's privacy-utility table, the evasion attack's defense table) read them from
here. Each family declares its label, level symbol and ε hooks in its own folder
(:class:`fedaudit.catalog.NoiseFamily`):

- Laplace noise on the update (``laplace_noise``): no clipping, so no guarantee; ε is None.
- DP-FedAvg (``dp_fedavg``, McMahan et al. 2018, Alg. 1): user-level ε over the rounds run,
  every client every round (:func:`fedaudit.defenses.dp_fedavg.budget.budget_fields`).
- DP-SGD (``dp_sgd``, Abadi et al. 2016, Alg. 1): slice-level ε from the (q, steps) each client
  reported every round in the training history, the largest over clients
  (:func:`fedaudit.defenses.dp_sgd.budget.budget_fields`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from fedaudit.catalog import loaded_noise_families, noise_hook
from fedaudit.defenses.update_noise import level_of
from fedaudit.scenarios import noise_defense, noise_family

NO_NOISE = "none"  # the privacy-utility frame's defense of a federation without noise


def noise_label(name: str | None) -> str:
    """How tables write the noise family ``name`` (``Laplace``, ``DP-FedAvg``, ...); "none"
    for no noise."""
    return "none" if name in (None, NO_NOISE) else noise_family(str(name)).label


def level_symbol(name: str | None) -> str:
    """How tables write a level of ``name``: Laplace's scale ``b``, DP-FedAvg's ``z``, ..."""
    return "z" if name in (None, NO_NOISE) else noise_family(str(name)).symbol


def noise_rank(name: str | None) -> int:
    """Where the family ``name`` sorts in a table: no noise first, then by ``rank``."""
    if name in (None, NO_NOISE):
        return 0
    order = list(loaded_noise_families())
    return 1 + order.index(name) if name in order else 1 + len(order)


def noise_level(defenses: Iterable[Mapping[str, Any]]
                ) -> tuple[str | None, float, dict[str, Any] | None]:
    """(defense name, level, its entry) of the scenario's noise defense; (None, 0.0, None)
    without one."""
    d = noise_defense(defenses)
    return (None, 0.0, None) if d is None else (d["name"], level_of(d), d)


def needs_history(defenses: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the scenario's ε is read from its training history (DP-SGD)."""
    d = noise_defense(defenses)
    return d is not None and noise_family(d["name"]).needs_history


def _fields(entry: Mapping[str, Any], rounds: int, history: Any,
            slices_per_patient: int | None) -> dict[str, Any]:
    if noise_family(str(entry["name"])).needs_history and history is None:
        raise ValueError(f"a {noise_label(entry['name'])} scenario's ε needs its training "
                         "history (history.tsv)")
    budget = noise_hook(str(entry["name"]), "budget")
    return {} if budget is None else budget(entry, rounds, history, slices_per_patient)


def scenario_epsilon(defenses: Iterable[Mapping[str, Any]], rounds: int,
                     history: Any = None) -> float | None:
    """ε at the defense's δ after ``rounds`` rounds (DP-FedAvg) or after the steps in
    ``history`` (DP-SGD, a ``history.tsv`` frame), None without a DP guarantee. A scenario
    whose ε is read from its history is an error without it: its ε cannot be known."""
    entry = noise_defense(defenses)
    if entry is None:
        return None
    return _fields(entry, rounds, history, None).get("epsilon")


def scenario_budget(defenses: Iterable[Mapping[str, Any]], rounds: int, history: Any = None,
                    slices_per_patient: int | None = None) -> dict[str, Any]:
    """Every ε of a scenario with its adjacency and unit (its family's ``budget`` hook), and
    where its noise comes from:

    - DP-FedAvg: ``epsilon`` (add/remove one hospital) and ``epsilon_replace`` (replace one
      hospital), :func:`fedaudit.defenses.dp_fedavg.budget.epsilons`;
    - DP-SGD: ``epsilon`` per 2-D slice, and the patient-level group bound over
      ``slices_per_patient`` slices (``epsilon_patient``, ``delta_patient``,
      ``patient_vacuous``), :func:`fedaudit.defenses.dp_sgd.budget.group_privacy`;
    - Laplace: no ε (no clipping);

    ``noise_source`` and ``simulation`` (:mod:`fedaudit.defenses.noise_source`): an ε of
    simulation noise is no guarantee against the server, which can regenerate that noise."""
    from fedaudit.defenses.noise_source import is_simulation, source_of

    entry = noise_defense(defenses)
    out: dict[str, Any] = {"epsilon": float("nan"), "epsilon_replace": float("nan"),
                           "epsilon_patient": float("nan"), "delta_patient": float("nan"),
                           "patient_vacuous": False, "slices_per_patient": float("nan"),
                           "noise_source": source_of(entry) if entry else "",
                           "simulation": is_simulation(entry)}
    if entry is not None:
        out.update(_fields(entry, rounds, history, slices_per_patient))
    return out


def epsilon_text(budget: Mapping[str, Any], defense: str | None) -> str:
    """A table cell: every ε of a scenario's budget (:func:`scenario_budget`) with its unit
    (the family's ``budget_text``), its ``no_budget_text`` for a family without a budget
    ("no ε (no clipping)" for Laplace), and the simulation-noise warning where it applies."""
    from fedaudit.defenses.noise_source import SIMULATION_NOTE

    if defense in (None, NO_NOISE):
        return "–"
    family = noise_family(defense)
    eps = float(budget.get("epsilon", float("nan")))
    if family.budget is None:
        text = family.no_budget_text
    elif np.isfinite(eps):
        hook = noise_hook(defense, "budget_text")
        text = f"{eps:.3g}" if hook is None else hook(budget)
    else:
        return "–"
    return text + (f" ({SIMULATION_NOTE})" if budget.get("simulation") else "")


def budget_note(defense: str, levels: Any, reference: str) -> str:
    """What a finding adds after a family's ε list (its ``budget_note`` hook; "" without)."""
    hook = noise_hook(defense, "budget_note")
    return "" if hook is None else hook(levels, reference)


MODEL_LABELS = {"batch": "BatchNorm", "group": "GroupNorm"}


def model_label(defenses: Iterable[Mapping[str, Any]], plugins: Iterable[str] = ()) -> str:
    """The UNet a scenario trains, as the tables write it: ``BatchNorm`` (the paper's) or
    ``GroupNorm`` (DP-SGD's and its reference's), from its defenses' model hooks."""
    from fedaudit.catalog import catalog

    norm = catalog(plugins).model_changes([dict(d) for d in defenses]).get("norm", "batch")
    return MODEL_LABELS.get(norm, str(norm))


def reference_scenario(scenario: str, candidates: Sequence[str],
                       defenses: dict[str, Sequence[dict[str, Any]]],
                       plugins: Sequence[str] = ()) -> str | None:
    """Which federation without noise a noisy one is read against, by name (the privacy-utility
    comparison's :func:`fedaudit.comparisons.privacy_utility.report.noise_reference` before any
    result): the first of ``candidates`` without
    update noise that trains the UNet the noisy ``scenario`` trains, else the first without
    noise; None for a scenario without noise or when no candidate has none. ``defenses``:
    scenario -> its defense entries."""
    def noisy(name: str) -> bool:
        return noise_level(list(defenses[name]))[0] is not None

    if not noisy(scenario):
        return None
    plain = [s for s in candidates if not noisy(s)]
    model = model_label(defenses[scenario], plugins)
    same = [s for s in plain if model_label(defenses[s], plugins) == model]
    return (same or plain or [None])[0]
