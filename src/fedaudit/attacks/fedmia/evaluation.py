"""FedMIA on one scenario's server log: measure (attacker), then score and evaluate (evaluator).

The algorithm is in :mod:`fedaudit.attacks.fedmia.algorithm`; this module moves files and holds the
evaluation design. The measurement reads only what the server holds (its log) and the candidate
units the attacker queries; the membership ground truth enters in :func:`evaluate_scenario` only.

Evaluation (what each number claims):

- **membership** -- members: the patients the target center trained on; non-members: the same
  center's held-out patients (validation, test, and train-split patients a capped scenario left
  out). Same scanner and protocol on both sides, so only membership can separate them.
- **center inference** -- members against the external center's patients: it also rewards
  telling the target's scanner from another center's, and is labelled as such.
- per target and pooled over targets (each candidate scored for its own center's client;
  permutations stay within a center); per unit (slice, batch) at unit level and at patient level
  (a patient's score = the mean over its units), with a 95 % patient-bootstrap CI and a
  permutation p-value (:mod:`fedaudit.attacks.membership_stats`).
- views: ``update`` (per-client Δw, plain FL), ``masked`` (per-client masked vectors under
  SecAgg+: the paper's SecAgg+ measurement) and ``aggregate`` (under SecAgg+ every client maps
  to the aggregate: only the uncalibrated cosine is meaningful, and it tests membership in the
  federation, not in one client).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from tqdm import tqdm

from fedaudit.archives import load_npz
from fedaudit.atomic import save_npz
from fedaudit.attacks.fedmia.algorithm import (
    FPR_POINTS,
    batch_groups,
    candidate_slices,
    cosine_scores,
    fedmia_z,
    flat_update,
    roc_metrics,
    similarity_matrix,
    trainable_names,
)
from fedaudit.attacks.membership_stats import cluster_auc
from fedaudit.attacks.views import ServerView
from fedaudit.data.slices import load_volume
from fedaudit.federation.plan import used_training_patients
from fedaudit.federation.server_log import AGGREGATE
from fedaudit.models.device import resolve_device
from fedaudit.runtime import derive_seed

_LOG = logging.getLogger("fedaudit")

UNITS = ("slice", "batch")
POOLED = "all"


def measure(*, server_log: str | Path, rounds: str | int | Sequence[int],
            patients: Sequence[tuple[str, str]], model_base: int, per_orientation: int,
            units: Sequence[str] = UNITS, batch_size: int = 8, loss: str = "l1",
            chunk_size: int = 32, device: str = "cpu") -> dict[str, Any]:
    """The attacker's measurement: per unit kind and view, similarity matrices ``[R, K, N]``
    for the candidates of ``patients`` ((center, preprocessed folder) pairs) at each round of
    ``rounds``. Keys: ``rounds``, ``centers``, ``update_files``, ``views``, ``units`` and per
    unit ``<unit>/center``, ``<unit>/patient``, ``<unit>/orientation`` and
    ``<unit>/similarity/<view>``."""
    unknown = [u for u in units if u not in UNITS]
    if unknown or not units:
        raise ValueError(f"FedMIA units must be among {UNITS}; got {list(units)}")
    dev = resolve_device(device)
    view = ServerView(server_log, model_base)
    round_list = view.rounds(rounds)
    t0 = time.perf_counter()
    cand = candidate_slices(((c, load_volume(f)) for c, f in patients), per_orientation)
    groups = {u: None if u == "slice" else batch_groups(cand, batch_size) for u in units}
    _LOG.info("%d candidate slices from %d patients (%.1f s to load); units: %s", len(cand),
              len(patients), time.perf_counter() - t0,
              {u: len(cand) if g is None else len(g) for u, g in groups.items()})
    model = view.network()  # the log's architecture (GroupNorm under DP-SGD)
    names = trainable_names(model)
    sims: dict[str, dict[str, list[np.ndarray]]] = {u: {} for u in units}
    centers: list[str] | None = None
    views: list[str] | None = None
    files: list[str] = []
    t1 = time.perf_counter()
    for rnd in tqdm(round_list, desc="FedMIA rounds", file=sys.stderr, mininterval=5):
        log = view.round(rnd)
        view.global_model(log, model).to(dev)
        clients = sorted(log.updates)
        if centers is not None and clients != centers:
            raise ValueError(f"{server_log}: round {rnd} has clients {clients}, earlier rounds "
                             f"{centers}")
        centers = clients
        per_view = {"update": [flat_update(log.updates[c], names) for c in clients]}
        if log.masked:
            per_view["masked"] = [flat_update(log.masked[c], names) for c in clients]
        if views is not None and list(per_view) != views:
            raise ValueError(f"{server_log}: round {rnd} holds views {list(per_view)}, earlier "
                             f"rounds {views}")
        views = list(per_view)
        files = [log.update_file[c] for c in clients]
        stacked = [u for v in views for u in per_view[v]]
        for unit, g in groups.items():
            s = similarity_matrix(model, stacked, cand, loss=loss, chunk_size=chunk_size,
                                  groups=g)
            for i, v in enumerate(views):
                sims[unit].setdefault(v, []).append(s[i * len(clients):(i + 1) * len(clients)])
        _LOG.info("round %d: %d clients, views %s; files %s", rnd, len(clients), views,
                  sorted(set(files)))
    seconds = time.perf_counter() - t1
    n_units = sum(len(cand) if g is None else len(g) for g in groups.values())
    rate = len(round_list) * n_units / max(seconds, 1e-9)
    _LOG.info("unit gradients: %.1f units/s on %s (%.1f s)", rate, dev, seconds)
    out: dict[str, Any] = {"rounds": np.array(round_list), "centers": np.array(centers),
                           "update_files": np.array(files), "views": np.array(views),
                           "units": np.array(list(units)), "seconds": seconds,
                           "units_per_s": rate}
    for unit, g in groups.items():
        first = np.arange(len(cand)) if g is None else np.array([x[0] for x in g])
        out[f"{unit}/center"] = cand.center[first]
        out[f"{unit}/patient"] = cand.patient[first]
        out[f"{unit}/orientation"] = cand.orientation[first]
        for v in views:
            out[f"{unit}/similarity/{v}"] = np.stack(sims[unit][v])
    return out


def save_measurement(path: str | Path, m: dict[str, Any]) -> None:
    save_npz(path, **{k: np.asarray(v) for k, v in m.items()})


def load_measurement(path: str | Path) -> dict[str, np.ndarray]:
    return load_npz(path)


def _fedmia_key(sims: np.ndarray, target: int) -> np.ndarray:
    """FedMIA's score Φ(z) with its z as the tie-breaker: Φ is exactly 1.0 in float64 for
    z > 8.3, and with three other clients the null's σ can be tiny, so a center's units tie at
    1.0 (79 % of one center's on a demo control run) and a ranking would read them as equal."""
    z = fedmia_z(sims, target)
    return np.stack([norm.cdf(z).mean(axis=0), z.mean(axis=0)], axis=1)


SCORERS = {"fedmia": _fedmia_key, "cosine": cosine_scores}
# The score each view is read by: FedMIA's calibration needs one vector per client; with only
# the aggregate, every client "equals" its null and FedMIA is 0.5 by construction.
VIEW_SCORES = {"update": ("fedmia", "cosine"), "masked": ("fedmia", "cosine"),
               "aggregate": ("cosine",)}
TESTS = {"membership": "members vs the same center's held-out patients",
         "center": "members vs the external center's patients (center inference)"}


def membership_truth(splits: dict[str, dict[str, Any]], *,
                     excluded: set[tuple[str, str]] | frozenset = frozenset(),
                     max_train_patients: int | None = None) -> dict[str, Any]:
    """Ground truth from the split records (center -> record with ``role``, ``train``, ``val``,
    ``test``): per training center ``members`` (what the scenario trained on, by
    :func:`~fedaudit.federation.plan.used_training_patients`) and ``held_out`` (its other
    patients), and the ``external`` (center, patient) pairs; QC-excluded patients are in none."""
    targets, external = {}, []
    for center, rec in splits.items():
        everyone = [p for k in ("train", "val", "test") for p in rec[k]
                    if (center, p) not in excluded]
        if rec["role"] == "external":
            external += [(center, p) for p in everyone]
            continue
        members = used_training_patients(center, rec["train"], excluded, max_train_patients)
        targets[center] = {"members": members,
                           "held_out": sorted(p for p in everyone if p not in members)}
    return {"targets": targets, "external": external}


def _items(m: dict[str, np.ndarray], unit: str, truth: dict[str, Any], target: str,
           test: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``unit`` candidates in ``target``'s ``test`` and their member labels."""
    center = m[f"{unit}/center"].astype(str)
    patient = m[f"{unit}/patient"].astype(str)
    t = truth["targets"][target]
    is_mem = (center == target) & np.isin(patient, t["members"])
    if test == "membership":
        is_non = (center == target) & np.isin(patient, t["held_out"])
    else:
        ext = np.array([f"{c}/{p}" for c, p in truth["external"]])
        is_non = np.isin(np.char.add(np.char.add(center, "/"), patient), ext)
    idx = np.flatnonzero(is_mem | is_non)
    return idx, is_mem[idx]


def _lexrank(key: np.ndarray) -> np.ndarray:
    """Average ranks (1..n) of rows of ``key`` ([n] or [n, k]) ordered by column 0, ties broken
    by column 1, and so on; rows equal in every column share a rank."""
    key = np.asarray(key, np.float64).reshape(len(key), -1)
    order = np.lexsort(key.T[::-1])
    ranks = np.empty(len(key))
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and np.array_equal(key[order[j]], key[order[i]]):
            j += 1
        ranks[order[i:j]] = (i + j + 1) / 2.0
        i = j
    return ranks


class _Ranked:
    """One target's evaluated units: their score keys ranked (FedMIA: its probability, ties
    broken by its z), labels, patients, and the patient-level ranking of the mean keys."""

    def __init__(self, key: np.ndarray, label: np.ndarray, patient: np.ndarray,
                 stratum: str) -> None:
        key = np.asarray(key, np.float64).reshape(len(label), -1)
        self.unit_score = _lexrank(key) if len(label) else np.zeros(0)
        self.label = np.asarray(label, bool)
        self.patient = np.char.add(f"{stratum}:", np.asarray(patient).astype(str))
        self.stratum = np.full(len(label), stratum)
        self.rank = self.unit_score / max(len(label), 1)
        names = np.unique(self.patient)
        means = np.array([key[self.patient == n].mean(axis=0) for n in names]).reshape(
            len(names), -1)
        self.p_names = names
        self.p_score = _lexrank(means) if len(names) else np.zeros(0)
        self.p_label = np.array([self.label[self.patient == n][0] for n in names], bool)
        self.p_stratum = np.full(len(names), stratum)

    @classmethod
    def pool(cls, parts: list[_Ranked]) -> _Ranked:
        out = cls.__new__(cls)
        for attr in ("unit_score", "label", "patient", "stratum", "rank", "p_names", "p_score",
                     "p_label", "p_stratum"):
            setattr(out, attr, np.concatenate([getattr(p, attr) for p in parts]))
        return out

    def units(self) -> tuple[np.ndarray, ...]:
        return self.unit_score, self.label, self.patient, self.stratum

    def patients(self) -> tuple[np.ndarray, ...]:
        return self.p_score, self.p_label, self.p_names, self.p_stratum


def _view_name(m: dict[str, np.ndarray], view: str) -> str:
    files = m["update_files"].astype(str)
    if view == "update" and files.size > 1 and (files == f"update_{AGGREGATE}.npz").all():
        return "aggregate"
    return view


def evaluate_scenario(m: dict[str, np.ndarray], truth: dict[str, Any], *, seed: int,
                      scenario: str, secagg: bool, control: bool = False
                      ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Score every target center and evaluate against ``truth`` (:func:`membership_truth`).

    Returns the metrics (one row per view, score, unit, level, test and target, ``all`` =
    pooled), the per-unit scores of the membership test, and pooled unit-level ROC curves keyed
    ``"<view>/<score>/<unit>/<test>/{fpr,tpr}"``.
    """
    centers = [str(c) for c in m["centers"]]
    targets = [c for c in centers if c in truth["targets"]]
    if not targets:
        raise ValueError(f"no target center of {sorted(truth['targets'])} is among the logged "
                         f"clients {centers}")
    for t in targets:
        rec = truth["targets"][t]
        both = set(rec["members"]) & set(rec["held_out"])
        if both:
            raise ValueError(f"patients {sorted(both)} are both members and non-members of {t}")
    rounds = ",".join(str(int(r)) for r in m["rounds"])
    rows, score_rows, curves = [], [], {}
    for view in m["views"].astype(str):
        vname = _view_name(m, view)
        for unit in m["units"].astype(str):
            sims = m[f"{unit}/similarity/{view}"]
            patient = m[f"{unit}/patient"].astype(str)
            for score in VIEW_SCORES[vname]:
                keys = {t: SCORERS[score](sims, centers.index(t)) for t in targets}
                for test in TESTS:
                    parts = {}
                    for target in targets:
                        idx, lab = _items(m, unit, truth, target, test)
                        parts[target] = _Ranked(keys[target][idx], lab, patient[idx], target)
                        if test == "membership":
                            score_rows.append(pd.DataFrame({
                                "view": vname, "score": score, "unit": unit, "target": target,
                                "patient": patient[idx], "member": lab,
                                "value": keys[target][idx].reshape(idx.size, -1)[:, 0]}))
                    parts[POOLED] = _Ranked.pool(list(parts.values()))
                    for target, part in parts.items():
                        ctx = (scenario, vname, score, unit, test, target)
                        rng = np.random.default_rng(derive_seed(seed, "fedmia", *ctx))
                        # pooled: each target ranked within itself (the AUC is stratified)
                        roc = roc_metrics(part.label, part.rank)
                        if target == POOLED:
                            curves[f"{vname}/{score}/{unit}/{test}/fpr"] = roc["fpr"]
                            curves[f"{vname}/{score}/{unit}/{test}/tpr"] = roc["tpr"]
                        for level, args in (("unit", part.units()), ("patient", part.patients())):
                            r = cluster_auc(*args, rng=rng)
                            row = {"scenario": scenario, "control": control, "secagg": secagg,
                                   "view": vname, "score": score, "unit": unit, "level": level,
                                   "test": test, "target": target, "auc": r.auc,
                                   "ci_low": r.ci_low, "ci_high": r.ci_high,
                                   "p_value": r.p_value,
                                   "n_member_patients": r.n_member_patients,
                                   "n_nonmember_patients": r.n_nonmember_patients,
                                   "n_members": r.n_member_items,
                                   "n_nonmembers": r.n_nonmember_items, "rounds": rounds}
                            for fpr in FPR_POINTS:
                                row[f"tpr@{fpr:g}fpr"] = (roc[f"tpr@{fpr:g}"] if level == "unit"
                                                          else np.nan)
                            rows.append(row)
    scores = pd.concat(score_rows, ignore_index=True)
    scores.insert(0, "scenario", scenario)
    return pd.DataFrame(rows), scores, curves
