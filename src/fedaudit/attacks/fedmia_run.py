"""FedMIA on one scenario's server log: measure (attacker), then score and evaluate (evaluator).

The algorithm is in :mod:`fedaudit.attacks.fedmia`; this module moves files. The measurement
reads only what the server holds (its log) and the candidate slices the attacker queries; the
membership ground truth enters in :func:`evaluate_scenario` only.
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
from tqdm import tqdm

from fedaudit.attacks.fedmia import (
    FPR_POINTS,
    balanced_indices,
    candidate_slices,
    cosine_scores,
    fedmia_scores,
    flat_update,
    patient_scores,
    roc_metrics,
    similarity_matrix,
    trainable_names,
)
from fedaudit.data.slices import load_volume
from fedaudit.federation.local import resolve_device
from fedaudit.federation.server_log import load_round, resolve_rounds
from fedaudit.federation.weights import exchanged_names, set_arrays
from fedaudit.models.unet import UNet2D
from fedaudit.runtime import derive_seed

_LOG = logging.getLogger("fedaudit")


def measure(*, server_log: str | Path, rounds: str | int | Sequence[int],
            patients: Sequence[tuple[str, str]], model_base: int, per_orientation: int,
            loss: str = "l1", chunk_size: int = 32, device: str = "cpu") -> dict[str, Any]:
    """The attacker's measurement: similarity matrices ``[R, K, N]`` for the candidate slices
    of ``patients`` ((center, preprocessed folder) pairs) at each round of ``rounds``."""
    dev = resolve_device(device)
    round_list = resolve_rounds(server_log, rounds)
    t0 = time.perf_counter()
    cand = candidate_slices(((c, load_volume(f)) for c, f in patients), per_orientation)
    _LOG.info("%d candidate slices from %d patients (%.1f s to load)", len(cand), len(patients),
              time.perf_counter() - t0)
    model = UNet2D(base=model_base)
    names = trainable_names(model)
    sims, centers = [], None
    t1 = time.perf_counter()
    for rnd in tqdm(round_list, desc="FedMIA rounds", file=sys.stderr, mininterval=5):
        log = load_round(server_log, rnd)
        set_arrays(model, [log.global_arrays[n] for n in exchanged_names(model)])
        model.to(dev)
        clients = sorted(log.updates)
        if centers is not None and clients != centers:
            raise ValueError(f"{server_log}: round {rnd} has clients {clients}, earlier rounds "
                             f"{centers}")
        centers = clients
        updates = [flat_update(log.updates[c], names) for c in clients]
        sims.append(similarity_matrix(model, updates, cand, loss=loss, chunk_size=chunk_size))
        _LOG.info("round %d: %d clients x %d samples; files %s", rnd, len(clients), len(cand),
                  sorted(set(log.update_file.values())))
    seconds = time.perf_counter() - t1
    rate = len(round_list) * len(cand) / max(seconds, 1e-9)
    _LOG.info("per-sample gradients: %.1f samples/s on %s (%.1f s)", rate, dev, seconds)
    return {"similarity": np.stack(sims), "rounds": np.array(round_list), "centers":
            np.array(centers), "center": cand.center, "patient": cand.patient,
            "orientation": cand.orientation, "index": cand.index, "seconds": seconds,
            "samples_per_s": rate}


def save_measurement(path: str | Path, m: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in m.items()})
    tmp.replace(path)


def load_measurement(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


SCORERS = {"fedmia": fedmia_scores, "cosine": cosine_scores}


def evaluate_scenario(m: dict[str, np.ndarray], *, members: dict[str, Sequence[str]],
                      nonmembers: dict[str, Sequence[str]], seed: int, scenario: str,
                      secagg: bool) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Score every target center and evaluate against the ground truth.

    ``members[t]``: the patients of t's training split; ``nonmembers[t]``: t's test patients and
    the external centers'. Returns the tidy metrics, the per-sample scores of the evaluated
    samples, and ROC curves keyed ``"<target>/<scorer>/<level>/{fpr,tpr}"``.
    ``fedmia_shuffled`` is the negative control: FedMIA scores against permuted labels.
    """
    centers = [str(c) for c in m["centers"]]
    patient = m["patient"].astype(str)
    rounds = ",".join(str(int(r)) for r in m["rounds"])
    rows, score_rows, curves = [], [], {}
    for t, target in enumerate(centers):
        if target not in members:
            continue
        mem_p, non_p = set(members[target]), set(nonmembers[target])
        if mem_p & non_p:
            raise ValueError(f"patients {sorted(mem_p & non_p)} are both members and non-members "
                             f"of {target}")
        is_mem = np.isin(patient, list(mem_p))
        is_non = np.isin(patient, list(non_p))
        rng = np.random.default_rng(derive_seed(seed, "fedmia", "balance", scenario, target))
        mi, ni = balanced_indices(np.flatnonzero(is_mem), np.flatnonzero(is_non), rng)
        sel = np.concatenate([mi, ni])
        labels = np.concatenate([np.ones(mi.size, bool), np.zeros(ni.size, bool)])
        shuffled = np.random.default_rng(derive_seed(seed, "fedmia", "shuffle", scenario,
                                                     target)).permutation(labels)
        scored = {name: fn(m["similarity"], t) for name, fn in SCORERS.items()}
        evals = [(name, "slice", labels, s[sel]) for name, s in scored.items()]
        evals.append(("fedmia_shuffled", "slice", shuffled, scored["fedmia"][sel]))
        for name, s in scored.items():
            pats = patient[sel]
            names, ps = patient_scores(s[sel], pats)
            evals.append((name, "patient", np.isin(names, list(mem_p)), ps))
        for name, level, lab, s in evals:
            r = roc_metrics(lab, s)
            curves[f"{target}/{name}/{level}/fpr"] = r["fpr"]
            curves[f"{target}/{name}/{level}/tpr"] = r["tpr"]
            metrics = {"auc": r["auc"], **{f"tpr@{p:g}fpr": r[f"tpr@{p:g}"] for p in FPR_POINTS}}
            for metric, value in metrics.items():
                rows.append({"scenario": scenario, "secagg": secagg, "target": target,
                             "score": name, "level": level, "metric": metric, "value": value,
                             "n_members": r["n_members"], "n_nonmembers": r["n_nonmembers"],
                             "rounds": rounds})
        score_rows.append(pd.DataFrame({
            "scenario": scenario, "target": target, "center": m["center"][sel].astype(str),
            "patient": patient[sel], "orientation": m["orientation"][sel].astype(str),
            "index": m["index"][sel], "member": labels, "fedmia": scored["fedmia"][sel],
            "cosine": scored["cosine"][sel]}))
    if not rows:
        raise ValueError(f"no target center of {sorted(members)} is among the logged clients "
                         f"{centers}")
    return pd.DataFrame(rows), pd.concat(score_rows, ignore_index=True), curves

