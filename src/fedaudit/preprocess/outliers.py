"""Per-center outlier flags on the preprocessing QC numbers: the MR/CT pairs a reader should not
trust (an MR filed beside another patient's CT, a registration that converged to the wrong pose).

Such a pair passes every hard check (the swapped pair of the issue that introduced this module
had head-mask coverage 0.902 against a 0.9 limit) yet poisons training and evaluation. What gives
it away is that it looks unlike its own center's other patients. Per patient and QC number
(:data:`QC_METRICS`), the modified z-score of Iglewicz & Hoaglin ("How to Detect and Handle
Outliers", ASQC 1993, Eq. 2.1: M = 0.6745 (x − median) / MAD, i.e. (x − median) / (1.4826 MAD))
is taken against the *other* patients of the same center (leave-one-out, so the outlier does not
widen its own reference), in the direction that means "worse"; a patient is flagged when any
score reaches the threshold (their recommended 3.5). Centers differ in contrast and resolution
(the demo's true pairs have MI medians from −0.67 to −0.75 by center), so the reference is the
center only: a patient whose center has fewer than :data:`MIN_REFERENCE` other patients is not
scored (its ``qc_reference_patients`` says so) rather than judged against other scanners. The
MAD has a floor per metric (the spread of true pairs measured on the demo data), so three
near-identical patients do not make a tiny, meaningless scale.

Measured on the demo data (5 centers, 3 true and 3 swapped pairs each): Mattes MI after
registration −0.65 to −0.78 for true pairs, −0.52 to −0.61 for swapped ones, 0.10-0.15 above
their center's median; coverage and outline agreement separate some swaps only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.io import QUARANTINE_KEY

ON_ERROR = ("fail", "exclude")  # preprocess.on_error
MIN_REFERENCE = 2  # other patients a center needs to be its own reference
# MAD of a normal sample x 1/Phi^-1(3/4) = 1.4826 = its sd (Iglewicz & Hoaglin 1993)
MAD_TO_SD = 1.0 / NormalDist().inv_cdf(0.75)


@dataclass(frozen=True)
class QCMetric:
    column: str
    label: str
    worse: str  # "higher" or "lower": the direction in which the value means a worse pair
    floor: float  # smallest robust sd used (same units as the metric)


QC_METRICS = (
    QCMetric("mi_after", "Mattes MI after registration", "higher", 0.02),
    QCMetric("mask_mr_coverage", "MR foreground inside the head mask", "lower", 0.01),
    QCMetric("outline_dice", "head-outline agreement of MR and CT (Dice)", "lower", 0.01),
)


def robust_z(value: float, reference: np.ndarray, floor: float) -> float:
    """(value − median) / max(1.4826·MAD, floor) of ``reference`` (Iglewicz & Hoaglin 1993)."""
    med = float(np.median(reference))
    mad = float(np.median(np.abs(reference - med)))
    return (value - med) / max(MAD_TO_SD * mad, floor)


def flag_outliers(table: pd.DataFrame, threshold: float = 3.5) -> pd.DataFrame:
    """``table`` (one row per patient: ``center``, ``patient`` and the :data:`QC_METRICS`
    columns) with ``qc_reference_patients`` (the center's other patients it was compared with),
    ``qc_z_<metric>`` (positive = worse; NaN when not scored), ``qc_flagged`` and
    ``qc_reasons`` added. Missing metric columns or values are skipped, not guessed.
    """
    for col in ("center", "patient"):
        if col not in table.columns:
            raise ValueError(f"QC table lacks column {col!r}")
    out = table.copy()
    centers = out["center"].astype(str).to_numpy()
    others = np.array([(centers == c).sum() - 1 for c in centers])
    out["qc_reference_patients"] = others
    reasons: list[list[str]] = [[] for _ in range(len(out))]
    for metric in QC_METRICS:
        zcol = f"qc_z_{metric.column}"
        out[zcol] = np.nan
        if metric.column not in out.columns:
            continue
        values = pd.to_numeric(out[metric.column], errors="coerce").to_numpy(float)
        sign = 1.0 if metric.worse == "higher" else -1.0
        for i, x in enumerate(values):
            ref_rows = (centers == centers[i]) & np.isfinite(values)
            ref_rows[i] = False
            if not np.isfinite(x) or ref_rows.sum() < MIN_REFERENCE:
                continue
            ref = values[ref_rows]
            z = sign * robust_z(x, ref, metric.floor)
            out.iat[i, out.columns.get_loc(zcol)] = z
            if z >= threshold:
                reasons[i].append(f"{metric.label} {x:.3f} vs median {np.median(ref):.3f} of "
                                  f"its center's other {ref.size} patients (robust z {z:.1f})")
    out["qc_flagged"] = [bool(r) for r in reasons]
    out["qc_reasons"] = ["; ".join(r) for r in reasons]
    return out


QC_FIRST_COLUMNS = ["center", "patient", "qc_flagged", "qc_reasons", "failed_step", "error"]


def qc_table(records: list[dict], threshold: float = 3.5) -> pd.DataFrame:
    """``qc.tsv``: one row per patient in ``records``' order (the per-patient QC records, and
    the quarantine records of patients who failed preprocessing,
    :mod:`fedaudit.preprocess.quarantine`). Preprocessed patients carry their QC numbers and
    outlier flags (:func:`flag_outliers`, among themselves only); a failed patient carries the
    step that failed and its error, and no QC numbers. Lists read as space-separated values."""
    done, failed = split_records(records)
    if not done:
        raise ValueError(f"no patient could be preprocessed ({len(failed)} failed)")
    table = flag_outliers(pd.json_normalize(done, sep="."), threshold=threshold)
    table["failed_step"], table["error"] = "", ""
    if failed:
        table = pd.concat([table, pd.DataFrame(
            [{"center": r["center"], "patient": r["patient"], "qc_flagged": False,
              "qc_reasons": "", "failed_step": r["step"], "error": r["error"]}
             for r in failed.values()])], ignore_index=True)
    order = {(r["center"], r["patient"]): i for i, r in enumerate(records)}
    rank = [order[key] for key in zip(table["center"], table["patient"], strict=True)]
    table = table.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)
    table = table[QC_FIRST_COLUMNS + [c for c in table.columns if c not in QC_FIRST_COLUMNS]]
    for col in table.columns:  # lists (shapes, vectors) read better as compact strings
        if table[col].map(lambda v: isinstance(v, list)).any():
            table[col] = table[col].map(lambda v: " ".join(f"{x:g}" if isinstance(x, float)
                                                             else str(x) for x in v)
                                        if isinstance(v, list) else v)
    return table


class FailedPatientsError(ValueError):
    """Patients failed preprocessing and ``preprocess.on_error`` is ``fail``."""


def failure_text(record: dict[str, Any]) -> str:
    """``step: error`` of a quarantine record, as ``qc_flags.json`` and the front page give it."""
    return f"{record['step']}: {record['error']}"


def split_records(records: Iterable[dict[str, Any]]
                  ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The QC records of the patients who were preprocessed, and ``center/patient`` -> the
    quarantine record (:mod:`fedaudit.preprocess.quarantine`) of those who were not."""
    done, failed = [], {}
    for record in records:
        if QUARANTINE_KEY in record:
            failed[patient_key(record["center"], record["patient"])] = record
        else:
            done.append(record)
    return done, failed


def apply_on_error(failed: dict[str, dict[str, Any]], on_error: str) -> dict[str, str]:
    """``center/patient`` -> ``step: error`` of the failed patients, which ``on_error:
    exclude`` leaves out; ``fail`` raises one error naming every one of them."""
    if on_error not in ON_ERROR:
        raise ValueError(f"config key 'preprocess.on_error': {on_error!r}; allowed: "
                         f"{', '.join(ON_ERROR)}")
    texts = {key: failure_text(rec) for key, rec in sorted(failed.items())}
    if texts and on_error == "fail":
        lines = "\n".join(f"  {key} at {text}" for key, text in texts.items())
        raise FailedPatientsError(
            f"{len(texts)} patient(s) could not be preprocessed:\n{lines}\n"
            "Fix or remove their files, or set preprocess.on_error: exclude to go on without "
            "them (they are then named in qc.tsv and on the report's front page), or list them "
            "in preprocess.exclude.")
    return texts


def patient_key(center: str, patient: str) -> str:
    """How a patient is named in ``qc_flags.json`` and in the report: ``center/patient``."""
    return f"{center}/{patient}"


def flags_record(flagged: pd.DataFrame, *, policy: str, threshold: float,
                 left_out: list[str] | tuple[str, ...] = (),
                 failed: dict[str, str] | None = None) -> dict:
    """What every downstream job reads (``results/preprocessed/qc_flags.json``): the flagged
    patients with their reasons, and those excluded under ``policy`` (``exclude``: all flagged;
    ``keep``: none, each kept with a warning in the logs and the report); ``left_out``: the
    ``center/patient`` entries the config's ``preprocess.exclude`` kept out of the study (never
    preprocessed, so never in ``flagged``); ``failed``: ``center/patient`` -> ``step: error``
    of the patients who could not be preprocessed (:mod:`fedaudit.preprocess.quarantine`), always
    excluded: they have no volumes. ``flagged`` holds only patients who were preprocessed."""
    if policy not in ("exclude", "keep"):
        raise ValueError(f"unknown QC policy {policy!r}; allowed: exclude, keep")
    failed = dict(sorted((failed or {}).items()))
    rows = flagged[flagged["qc_flagged"]]
    reasons = {patient_key(r.center, r.patient): r.qc_reasons for r in rows.itertuples()}
    both = set(reasons) & set(failed)
    if both:
        raise ValueError(f"patients both flagged and failed: {sorted(both)}")
    return {"policy": policy, "z_threshold": threshold, "flagged": reasons,
            "excluded": sorted((list(reasons) if policy == "exclude" else []) + list(failed)),
            "failed": failed, "left_out": sorted(left_out)}


def excluded_patients(record: dict) -> set[tuple[str, str]]:
    """(center, patient) pairs a ``qc_flags.json`` record excludes."""
    return {tuple(key.split("/", 1)) for key in record.get("excluded", [])}  # type: ignore[misc]


def failed_patients(record: dict) -> set[tuple[str, str]]:
    """(center, patient) pairs a ``qc_flags.json`` record lists as failed preprocessing: they
    have no volumes, so even a job that scores excluded patients (evaluation) skips them."""
    return {tuple(key.split("/", 1)) for key in record.get("failed", {})}  # type: ignore[misc]


def read_failed(path: str | Path) -> set[tuple[str, str]]:
    """:func:`failed_patients` of the ``qc_flags.json`` at ``path``."""
    return failed_patients(json.loads(Path(path).read_text(encoding="utf-8")))


def read_excluded(path: str | Path) -> set[tuple[str, str]]:
    """(center, patient) pairs the ``qc_flags.json`` at ``path`` excludes: what every job that
    uses patients reads."""
    return excluded_patients(json.loads(Path(path).read_text(encoding="utf-8")))
