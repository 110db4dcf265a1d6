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
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

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


def patient_key(center: str, patient: str) -> str:
    """How a patient is named in ``qc_flags.json`` and in the report: ``center/patient``."""
    return f"{center}/{patient}"


def flags_record(flagged: pd.DataFrame, *, policy: str, threshold: float,
                 left_out: list[str] | tuple[str, ...] = ()) -> dict:
    """What every downstream job reads (``results/preprocessed/qc_flags.json``): the flagged
    patients with their reasons, and those excluded under ``policy`` (``exclude``: all flagged;
    ``keep``: none, each kept with a warning in the logs and the report); ``left_out``: the
    ``center/patient`` entries the config's ``preprocess.exclude`` kept out of the study (never
    preprocessed, so never in ``flagged``)."""
    if policy not in ("exclude", "keep"):
        raise ValueError(f"unknown QC policy {policy!r}; allowed: exclude, keep")
    rows = flagged[flagged["qc_flagged"]]
    reasons = {patient_key(r.center, r.patient): r.qc_reasons for r in rows.itertuples()}
    return {"policy": policy, "z_threshold": threshold, "flagged": reasons,
            "excluded": sorted(reasons) if policy == "exclude" else [],
            "left_out": sorted(left_out)}


def excluded_patients(record: dict) -> set[tuple[str, str]]:
    """(center, patient) pairs a ``qc_flags.json`` record excludes."""
    return {tuple(key.split("/", 1)) for key in record.get("excluded", [])}  # type: ignore[misc]


def read_excluded(path: str | Path) -> set[tuple[str, str]]:
    """(center, patient) pairs the ``qc_flags.json`` at ``path`` excludes: what every job that
    uses patients reads."""
    return excluded_patients(json.loads(Path(path).read_text(encoding="utf-8")))
