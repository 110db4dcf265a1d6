"""The evaluator's side of the evasion attack: per-slice measurements and the rates built from
them (numpy, pandas and scipy; no torch, so the report environment reads them).

Definitions (paper 004 §IV-C adapted to a regression model; docs/evasion.md):

- **clean MAE / adversarial MAE** (HU): per slice, the mean |sCT − CT| over the head mask of the
  model's output on the clean / perturbed MR (paper 000 Eq. 3 on one slice, no clipping, the
  SynthRAD2023 definition); **ΔMAE** = adversarial − clean.
- **success** (untargeted): ΔMAE > ``threshold_hu``. Paper 004's ASR counts changed labels
  (their Eq. 4); an sCT has no label, so a slice counts as fooled when its error grows by more
  than a clinically relevant amount. Default 30 HU: paper 000 calls a residual MAE about 30 HU
  above the no-poisoning baseline "potentially non-negligible in clinical settings" (Table 3
  discussion, FedMedian with center D poisoned), larger than the spread between patients of
  one center there (sd 2–12.5 HU, Table 2).
- **success** (targeted): the region's mean |sCT − target_hu| falls by more than
  ``threshold_hu`` (the sCT inside bone moved that far toward soft tissue).
- **ASR** = successes / attacked slices of one model, with an exact (Clopper–Pearson) 95%
  interval over slices; **AASR** = the mean ASR over the victim clients (their Eq. 4's average
  over clients, the attacker's own model excluded).
- **transfer rate** = share of the slices that fool the attacker's own (white-box) model that
  also fool the victim (paper 004 Table II's "error transfer rate"), exact interval over those.
- **null**: the same scoring of a random ±ε perturbation (a random corner of the same ball): an
  attack is a finding only as far as it beats random L∞ noise of its budget.
- **perturbation PSNR** (dB, imperceptibility): 10·log10(1 / MSE(x', x)) over the whole slice
  (MR range 1), with the perturbation's L∞ norm and mean |δ|.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fedaudit.report.intervals import clopper_pearson

ROLES = ("whitebox", "global", "victim")
# columns that identify one (scenario, setting, model) cell of the rates
SETTING_COLUMNS = ["setting", "goal", "method", "label", "epsilon", "alpha", "alpha_fraction",
                   "steps", "random_start", "sweep_epsilon", "sweep_alpha", "sweep_steps",
                   "headline"]
CELL = ["scenario", "attacker", *SETTING_COLUMNS, "model", "role"]


def slice_mae(sct_hu: np.ndarray, ct_hu: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per slice (first axis), the mean |sCT − CT| in HU over the mask (NaN without mask)."""
    m = mask.reshape(len(mask), -1).astype(np.float64)
    err = np.abs(sct_hu.astype(np.float64) - ct_hu.astype(np.float64)).reshape(len(m), -1)
    n = m.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (err * m).sum(1) / n, np.nan)


def region_mean(values: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Per slice, the mean of ``values`` over ``region`` (NaN where the region is empty)."""
    r = region.reshape(len(region), -1).astype(np.float64)
    v = values.reshape(len(r), -1).astype(np.float64)
    n = r.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (v * r).sum(1) / n, np.nan)


def perturbation_stats(x: np.ndarray, x_adv: np.ndarray) -> dict[str, np.ndarray]:
    """Per slice: L∞ norm, mean |δ| and PSNR (dB, data range 1) of δ = x' − x."""
    d = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    mse = (d ** 2).mean(1)
    with np.errstate(divide="ignore"):
        psnr = np.where(mse > 0, 10.0 * np.log10(1.0 / np.maximum(mse, 1e-300)), np.inf)
    return {"linf": np.abs(d).max(1), "mean_abs": np.abs(d).mean(1), "psnr": psnr}


def successes(rows: pd.DataFrame, threshold_hu: float) -> pd.Series:
    """Whether each per-slice row counts as fooled (module docstring); NaN measurements (an
    unusable model) never count."""
    untargeted = rows["goal"] == "untargeted"
    value = np.where(untargeted, rows["delta_mae"], rows["shift"]).astype(float)
    return pd.Series(np.nan_to_num(value, nan=-np.inf) > threshold_hu, index=rows.index)


def _interval(k: int, n: int) -> tuple[float, float]:
    return clopper_pearson(k, n) if n else (np.nan, np.nan)


def rates(slices: pd.DataFrame, threshold_hu: float) -> pd.DataFrame:
    """One row per (scenario, setting, model): slices and patients attacked, clean / adversarial
    / Δ MAE, successes and ASR with its exact 95% interval, the null's ASR on the same model at
    the same ε and goal, the transfer rate from the white-box model, perturbation PSNR / L∞,
    crafting seconds per batch and, for targeted rows, the mean shift toward the target HU."""
    if slices.empty:
        return pd.DataFrame(columns=[*CELL, "usable", "n_slices", "asr"])
    rows = slices.copy()
    rows["success"] = successes(rows, threshold_hu)
    wb = rows[rows["role"] == "whitebox"].set_index(["scenario", "setting", "slice"])["success"]
    out = []
    for key, sub in rows.groupby(CELL, sort=False, dropna=False):
        n, k = len(sub), int(sub["success"].sum())
        # finite sCT and, where the scorer says so, better than the constant predictor
        usable = bool(np.isfinite(sub["clean_mae"]).any()) and (
            bool(sub["usable"].astype(bool).all()) if "usable" in sub else True)
        lo, hi = _interval(k, n) if usable else (np.nan, np.nan)
        cell = dict(zip(CELL, key, strict=True))
        rec = {**cell, "usable": usable, "n_slices": n,
               "n_patients": int(sub["patient"].nunique()), "successes": k,
               "asr": k / n if usable and n else np.nan, "ci_low": lo, "ci_high": hi,
               "clean_mae": float(sub["clean_mae"].mean()), "adv_mae": float(sub["adv_mae"].mean()),
               "delta_mae": float(sub["delta_mae"].mean()),
               "delta_mae_median": float(sub["delta_mae"].median()),
               "shift": float(sub["shift"].mean()) if "shift" in sub else np.nan,
               "clean_region_hu": float(sub["clean_region_hu"].mean()),
               "adv_region_hu": float(sub["adv_region_hu"].mean()),
               "psnr": float(sub["psnr"].replace(np.inf, np.nan).mean()),
               "linf": float(sub["linf"].max()), "mean_abs": float(sub["mean_abs"].mean()),
               "seconds_per_batch": float(sub["seconds_per_batch"].dropna().mean())
               if sub["seconds_per_batch"].notna().any() else np.nan,
               "batch_size": int(sub["batch_size"].max())}
        # transfer: of the slices that fool the attacker's own model, those that fool this one
        idx = pd.MultiIndex.from_arrays([sub["scenario"], sub["setting"], sub["slice"]])
        fooled_wb = wb.reindex(idx).fillna(False).to_numpy(bool)
        n_t = int(fooled_wb.sum())
        k_t = int((fooled_wb & sub["success"].to_numpy(bool)).sum())
        t_lo, t_hi = _interval(k_t, n_t)
        rec.update(transfer_n=n_t, transfer_k=k_t,
                   transfer_rate=k_t / n_t if n_t else np.nan, transfer_ci_low=t_lo,
                   transfer_ci_high=t_hi)
        out.append(rec)
    table = pd.DataFrame(out)
    null = table[table["method"] == "random"].set_index(
        ["scenario", "goal", "epsilon", "model"])[["asr", "successes", "delta_mae", "shift"]]
    null.columns = [f"null_{c}" for c in null.columns]
    table = table.join(null, on=["scenario", "goal", "epsilon", "model"])
    return table


def aasr(table: pd.DataFrame) -> pd.DataFrame:
    """Per (scenario, setting): the AASR (mean ASR over the victim clients), its range and the
    number of victims, the null's AASR, the mean transfer rate."""
    vic = table[(table["role"] == "victim") & table["usable"].astype(bool)]
    if vic.empty:
        return pd.DataFrame(columns=["scenario", "setting", "aasr", "victims"])
    g = vic.groupby(["scenario", "setting"], sort=False)
    return pd.DataFrame({
        "aasr": g["asr"].mean(), "aasr_min": g["asr"].min(), "aasr_max": g["asr"].max(),
        "victims": g["model"].nunique(), "null_aasr": g["null_asr"].mean(),
        "transfer_rate": g["transfer_rate"].mean(),
        "victim_clean_mae": g["clean_mae"].mean(),
        "victim_delta_mae": g["delta_mae"].mean()}).reset_index()


def pooled_lower_bound(successes_: Sequence[int], attacked: Sequence[int], k: int
                       ) -> list[float]:
    """Lower bounds of exact intervals at the Bonferroni level 1 − 0.05/k (k comparisons)."""
    return [clopper_pearson(int(s), int(n), 1 - 0.05 / max(k, 1))[0] if n else np.nan
            for s, n in zip(successes_, attacked, strict=True)]
