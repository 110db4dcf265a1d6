"""Per-center summaries of the image metrics and the paired tests behind paper 000's Table 3.

Source: paper 000, "Results and Discussion" / Table 3 (per-center MAE, PSNR and SSIM as
mean +/- sd, with p-values of each attacked/defended scenario against its reference, computed on
the same test patients). The test is the paired two-sided Wilcoxon signed-rank test (Wilcoxon,
Biometrics Bulletin 1945) as implemented by ``scipy.stats.wilcoxon``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

METRICS = ("mae", "psnr", "ssim")
KEYS = ("scenario", "center", "patient")

RESULT_COLUMNS = ("scenario", "reference", "center", "metric", "n", "median_diff", "statistic",
                  "p_value", "note")


def _validate(df: pd.DataFrame) -> None:
    missing = [c for c in (*KEYS, *METRICS) if c not in df.columns]
    if missing:
        raise ValueError(f"per-patient frame lacks column(s): {', '.join(missing)}")
    dup = df.duplicated(list(KEYS), keep=False)
    if dup.any():
        first = df.loc[dup, list(KEYS)].iloc[0].to_dict()
        # a patient counted twice would weigh double in the mean and break the pairing
        raise ValueError(f"duplicate rows for {first}")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per (scenario, center): patient count ``n`` and ``<metric>_mean`` / ``<metric>_sd``.

    Source: paper 000 Table 3 (mean +/- sd per center). ``sd`` is the sample standard deviation
    (ddof=1), NaN when n == 1. Groups keep the order in which they first appear in ``df``, so
    tables follow the scenario order of the config rather than alphabetical order.
    """
    _validate(df)
    grouped = df.groupby(["scenario", "center"], sort=False)
    out = grouped.size().rename("n").to_frame()
    for metric in METRICS:
        out[f"{metric}_mean"] = grouped[metric].mean()
        out[f"{metric}_sd"] = grouped[metric].std(ddof=1)
    return out.reset_index()


def _paired_test(diff: np.ndarray) -> tuple[float, float, str]:
    """(statistic, p_value, note) of the two-sided signed-rank test on paired differences."""
    if diff.size < 2:
        return np.nan, np.nan, "n<2"
    if np.isnan(diff).any():
        return np.nan, np.nan, "NaN in differences"
    if not np.any(diff != 0):
        return np.nan, np.nan, "all differences zero"
    # scipy defaults: zero differences dropped (zero_method="wilcox"); method="auto" takes the
    # exact null distribution for small samples without zeros, else the normal approximation.
    res = wilcoxon(diff, alternative="two-sided")
    return float(res.statistic), float(res.pvalue), ""


def wilcoxon_vs_reference(df: pd.DataFrame, pairs: dict[str, str]) -> pd.DataFrame:
    """Paired two-sided Wilcoxon signed-rank test of each scenario against its reference.

    Source: paper 000 Table 3 p-values; Wilcoxon (1945) via ``scipy.stats.wilcoxon``. For every
    ``scenario -> reference`` in ``pairs``, every center and every metric (mae, psnr, ssim), the
    patients are paired on (center, patient) and the differences ``scenario - reference`` tested.
    ``statistic`` is scipy's two-sided statistic, min(W+, W-); ``median_diff`` is the median of
    all paired differences (zeros included). When the test is undefined, ``statistic`` and
    ``p_value`` are NaN and ``note`` says why ("n<2", "all differences zero", "NaN in
    differences"); otherwise ``note`` is "".

    Raises ``ValueError`` if a scenario is absent from ``df`` or, naming scenario, reference and
    center, if the two scenarios do not hold the same patients in a center -- an unpaired
    comparison would silently test different people.
    """
    _validate(df)
    known = set(df["scenario"])
    rows: list[dict[str, object]] = []
    for scenario, reference in pairs.items():
        for name in (scenario, reference):
            if name not in known:
                raise ValueError(f"scenario {name!r} has no rows in the per-patient frame")
        s = df[df["scenario"] == scenario]
        r = df[df["scenario"] == reference]
        centers = list(dict.fromkeys([*s["center"], *r["center"]]))
        for center in centers:
            sc = s[s["center"] == center]
            rc = r[r["center"] == center]
            only_s = sorted(set(sc["patient"]) - set(rc["patient"]), key=str)
            only_r = sorted(set(rc["patient"]) - set(sc["patient"]), key=str)
            if only_s or only_r:
                raise ValueError(
                    f"scenario {scenario!r} vs reference {reference!r}, center {center!r}: "
                    f"patient sets differ (only in {scenario!r}: {only_s}; "
                    f"only in {reference!r}: {only_r})"
                )
            paired = sc.merge(rc, on=["center", "patient"], suffixes=("_s", "_r"))
            for metric in METRICS:
                diff = (paired[f"{metric}_s"] - paired[f"{metric}_r"]).to_numpy(np.float64)
                stat, p, note = _paired_test(diff)
                rows.append({
                    "scenario": scenario, "reference": reference, "center": center,
                    "metric": metric, "n": int(diff.size),
                    "median_diff": float(np.median(diff)) if diff.size else np.nan,
                    "statistic": stat, "p_value": p, "note": note,
                })
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def with_constant_ratio(summary: pd.DataFrame, constant: str = "constant") -> pd.DataFrame:
    """``summary`` with ``mae_vs_constant``: each row's ``mae_mean`` divided by the mean MAE of
    the ``constant`` predictor's rows on the same center (the same test patients), so a value
    below 1 means the model beats predicting one HU everywhere in the head
    (:mod:`fedaudit.evaluation.reference`). NaN where the constant has no row for the center."""
    ref = summary[summary["scenario"] == constant].set_index("center")["mae_mean"]
    if ref.empty:
        raise ValueError(f"summary has no rows for the {constant!r} predictor")
    return summary.assign(mae_vs_constant=summary["mae_mean"] / summary["center"].map(ref))
