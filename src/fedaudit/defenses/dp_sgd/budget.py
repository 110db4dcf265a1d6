"""ε of the DP-SGD federations, per client, from a maintained accountant (``dp-accounting``).

The mechanism (Abadi et al. 2016, "Deep Learning with Differential Privacy", Alg. 1, as run by
:mod:`.private`): every local step of a client is the Gaussian mechanism with noise multiplier σ
on the sum of per-slice gradients clipped to C, applied to a Poisson sample of the slices of the
client's current epoch at rate q = L/N (L = ``train.batch_size``, N = slices in that epoch's
plan). A round is a sequence of such steps; the guarantee of a client composes every step of
every round it ran, each with its own q (the epoch plan, and with it N, changes every round).
Everything the server derives from the noisy steps (the update, the global models, the attacks)
is post-processing.

**Unit of privacy: one 2-D slice, not a patient** (the patient-level figure is the
group-privacy bound :func:`group_privacy` over the most slices one patient can contribute). The
adjacency is add/remove one slice of the client's epoch (the setting of the subsampled-Gaussian
analysis, Mironov, Talwar & Zhang 2019).
A patient contributes many slices (every head-containing slice of its volume, in one of three
orientations per epoch, and each voxel lies in slices of all three), so a patient-level
guarantee is the group privacy of all of them and ε for a patient is much larger than the
reported one (for k slices, roughly k times for small ε, with δ growing too). Slices seen by no
lot cost nothing extra; a slice that is in an epoch's plan is sampled at rate q, so the bound
below, which charges every slice at q in every epoch, is conservative. The epoch sizes N (hence
q and the number of steps) are treated as public, as in Abadi et al. and Opacus.

Accounting: Rényi DP of the Poisson-subsampled Gaussian (Mironov, Talwar & Zhang 2019; Abadi et
al.'s moments accountant is the same quantity at integer orders), composed over steps and
converted to (ε, δ) by ``dp_accounting.rdp.RdpAccountant`` (Canonne, Kamath & Steinke 2020,
Prop. 12). The clients report their (q, steps) per epoch in their fit metrics
(``dp_sgd_events``, :mod:`.private`), which the training history keeps; no formula is written
here. Tests check the value against Abadi et al.'s published one and against Opacus' own RDP
accountant.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

DP_SGD = "dp_sgd"
EVENTS = "dp_sgd_events"  # the fit metric of fedaudit.defenses.dp_sgd.private


def epsilon(noise_multiplier: float, events: Iterable[tuple[float, int]], delta: float
            ) -> float:
    """ε at ``delta`` of DP-SGD steps with noise multiplier σ = ``noise_multiplier``:
    ``events`` are (sample rate q, number of steps) pairs, composed in order (RDP accountant of
    ``dp-accounting``, module docstring). No step costs nothing (0); σ = 0 is no privacy (inf).
    """
    from dp_accounting import dp_event
    from dp_accounting.rdp import RdpAccountant

    events = [(float(q), int(n)) for q, n in events]
    if not 0 < delta < 1:
        raise ValueError(f"need 0 < delta < 1; got {delta}")
    bad = [(q, n) for q, n in events if not 0 < q <= 1 or n < 0]
    if bad:
        raise ValueError(f"DP-SGD events need 0 < q <= 1 and steps >= 0; got {bad[0]}")
    if not any(n for _, n in events):
        return 0.0
    if noise_multiplier <= 0:
        return float("inf")
    # Composition adds Rényi divergences, so steps at one rate are one self-composed event
    # whatever their order: one accountant call per rate, not per epoch (40 epochs of one rate
    # took 10.7 s against 0.26 s, measured).
    steps_at: dict[float, int] = {}
    for q, n in events:
        steps_at[q] = steps_at.get(q, 0) + n
    accountant = RdpAccountant()
    for q, n in steps_at.items():
        if n == 0:
            continue
        step: Any = dp_event.GaussianDpEvent(float(noise_multiplier))
        if q < 1:
            step = dp_event.PoissonSampledDpEvent(q, step)
        accountant.compose(dp_event.SelfComposedDpEvent(step, n))
    return float(accountant.get_epsilon(delta))


def group_privacy(eps: float, delta: float, k: int) -> tuple[float, float]:
    """(ε, δ) for a group of ``k`` units from an (ε, δ) guarantee for one: ``(kε,
    k·e^{(k−1)ε}·δ)`` (Dwork & Roth 2014, "The Algorithmic Foundations of Differential
    Privacy", Thm. 2.2 for pure DP; Vadhan 2017, "The Complexity of Differential Privacy",
    Lemma 2.2 with δ). A patient of k slices gets this bound; it is vacuous when the δ it gives
    is 1 or more (returned as computed, ``inf`` on overflow)."""
    if k < 1:
        raise ValueError(f"a group has at least one member; got k = {k}")
    if not np.isfinite(eps):
        return float("inf"), float("inf")
    exponent = (k - 1) * eps
    group_delta = float("inf") if exponent > 700 else k * math.exp(exponent) * delta
    return k * eps, group_delta


def vacuous(group: tuple[float, float]) -> bool:
    """Whether a group bound (ε, δ) says nothing: δ ≥ 1 (any event may happen) or ε infinite."""
    eps, delta = group
    return not (np.isfinite(eps) and delta < 1)


def client_events(history: Any) -> dict[str, list[tuple[float, int]]]:
    """Per center, the (q, steps) of every epoch it trained, in round order, from a training
    history (``history.tsv`` as a DataFrame: one row per round and center, the DP-SGD clients'
    ``dp_sgd_events`` JSON). Rows without events (a client that did not run DP-SGD) add
    nothing."""
    out: dict[str, list[tuple[float, int]]] = {}
    if EVENTS not in history.columns:
        return out
    for _, row in history.sort_values("round", kind="stable").iterrows():
        raw = row[EVENTS]
        if not isinstance(raw, str):
            continue  # NaN: no DP-SGD in that row
        out.setdefault(str(row["center"]), []).extend(
            (float(q), int(n)) for q, n in json.loads(raw))
    return out


def client_epsilons(defense: Mapping[str, Any], history: Any) -> dict[str, float]:
    """ε of every client of a DP-SGD federation over all the rounds in ``history``."""
    sigma, delta = float(defense["noise_multiplier"]), float(defense["delta"])
    return {c: epsilon(sigma, ev, delta) for c, ev in sorted(client_events(history).items())}


def scenario_epsilon(defenses: Iterable[Mapping[str, Any]], history: Any) -> float | None:
    """The scenario's DP-SGD ε: the largest over its clients (the client with the fewest slices
    has the largest q), or None when the scenario does not run DP-SGD. A DP-SGD scenario whose
    history has no events is an error (it was trained without the defense's reports)."""
    entry = next((dict(d) for d in defenses if d["name"] == DP_SGD), None)
    if entry is None:
        return None
    eps = client_epsilons(entry, history)
    if not eps:
        raise ValueError(f"a DP-SGD federation's history has no {EVENTS!r} column or rows: "
                         "ε cannot be computed (re-train the scenario)")
    return max(eps.values())


# ------------------------------------------------------------ the family's hooks (plugin.py)


def budget_fields(entry: Mapping[str, Any], rounds: int, history: Any = None,
                  slices_per_patient: int | None = None) -> dict[str, Any]:
    """``NoiseFamily.budget``: ε per 2-D slice (the largest over clients, from the steps each
    client reported in ``history``) and the patient-level group bound over
    ``slices_per_patient`` slices (:func:`group_privacy`)."""
    if history is None:
        raise ValueError("a DP-SGD scenario's ε needs its training history (history.tsv)")
    eps = scenario_epsilon([dict(entry)], history)
    out: dict[str, Any] = {"epsilon": eps}
    if slices_per_patient is not None and eps is not None:
        group = group_privacy(float(eps), float(entry["delta"]), int(slices_per_patient))
        out.update(epsilon_patient=group[0], delta_patient=group[1],
                   patient_vacuous=vacuous(group), slices_per_patient=slices_per_patient)
    return out


def budget_text(budget: Mapping[str, Any]) -> str:
    """``NoiseFamily.budget_text``: ε per slice and what it gives a patient."""
    k = budget.get("slices_per_patient", float("nan"))
    if not np.isfinite(k):
        patient = "patient: not computed"
    elif budget.get("patient_vacuous"):
        patient = f"patient (≤ {int(k)} slices): no meaningful patient-level guarantee"
    else:
        patient = (f"patient (≤ {int(k)} slices): {float(budget['epsilon_patient']):.3g} "
                   f"at δ = {float(budget['delta_patient']):.2g}")
    return f"{float(budget['epsilon']):.3g} per slice · {patient}"


def budget_note(levels: Any, reference: str) -> str:
    """``NoiseFamily.budget_note``: the unit, the patient-level reading and the UNet compared
    (``levels``: the family's rows of the privacy-utility frame)."""
    import pandas as pd

    vac = bool(levels.get("patient_vacuous", pd.Series([False])).astype(bool).any())
    return (" (per 2-D slice, the largest over clients; "
            + ("no meaningful patient-level guarantee at these levels; " if vac
               else "a patient's ε is larger; ")
            + f"GroupNorm UNet, compared with {reference}"
            + (")" if reference != "baseline" else
               ", the BatchNorm baseline: its MAE mixes DP's cost with GroupNorm's)"))
