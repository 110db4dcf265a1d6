"""DLG's table and verdict finding (paper 000 "Gradient Inversion", Fig. 2 as numbers), read
against the BatchNorm-free UNet positive control and the MLP code check (issue 12)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.report.levels import Level
from fedaudit.report.tables import DASH, Block, Table, TableError, need
from fedaudit.report.verdict import Finding

OPTIMIZERS = {"adam": "Adam", "lbfgs": "L-BFGS"}
# SSIM of the best DLG reconstruction inside the head mask (1 = identical slice), after the
# least-squares gain/offset fit: with train-mode BatchNorm and batch 1 the shared gradient hides
# the MR's scale, so the unfitted score would measure a drifted scale, not leaked anatomy.
DLG_METRIC = "ssim_fit"
DLG_HIGH, DLG_MODERATE = 0.8, 0.5
# The BatchNorm-free UNet (the positive control) must reach this fitted SSIM for the UNet's score
# to be read, and the MLP code check must reach it for the attack code to count as working
# (issue 12).
DLG_CONTROL_OK = 0.9


def inversion_table(dlg: pd.DataFrame) -> Table:
    """DLG per center and optimiser, one row per attacked network (the UNet, the same UNet
    without BatchNorm, the MLP code check; :func:`.inversion.run_dlg`): SSIM and PSNR (dB)
    inside the head mask, raw and after the least-squares gain/offset fit
    (:func:`.inversion.reconstruction_quality`), and the iterations run. One row per network
    rather than one column group per network keeps the table as narrow as paper 000's (Fig. 2
    reports SSIM and PSNR per reconstruction) whatever the number of controls."""
    need(dlg, ["scenario", "center", "optimizer", "network", "metric", "value"], "DLG table")
    # fedaudit.attacks.dlg.inversion.NETWORKS in table order, with their row labels
    networks = {"unet": "UNet", "control": "UNet without BatchNorm (control)",
                "code_check": "MLP (code check)"}
    scores = [f"{m}_{k}" for k in ("raw", "fit") for m in ("ssim", "psnr")]
    t = dlg[dlg["metric"].isin([*scores, "iterations"])].copy()
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    if not t["metric"].isin(scores).any():
        raise TableError(f"DLG table has no {'/'.join(scores)} rows")
    unknown = sorted(set(t["network"]) - set(networks))
    if unknown:
        raise TableError(f"DLG table has networks {unknown}; expected {list(networks)}")
    wide = t.pivot_table(index=["scenario", "center", "optimizer", "network"],
                         columns="metric", values="value", aggfunc="first")
    wide = wide.sort_index(key=lambda ix: ix.map(list(networks).index)
                           if ix.name == "network" else ix)
    multi = t["scenario"].nunique() > 1
    rows, data, last = [], [], (None, None, None)
    for (scenario, center, optimizer, net), rec in wide.iterrows():
        # a group's keys are written on its first row only
        row = {"Scenario": scenario if scenario != last[0] else ""} if multi else {}
        row.update({"Center": center if (scenario, center) != last[:2] else "",
                    "Optimizer": OPTIMIZERS.get(optimizer, optimizer)
                    if (scenario, center, optimizer) != last else "",
                    "Network": networks[net]})
        last = (scenario, center, optimizer)
        for kind in ("raw", "fit"):
            ssim = rec.get(f"ssim_{kind}", np.nan)
            psnr = rec.get(f"psnr_{kind}", np.nan)
            row[f"SSIM {kind}"] = f"{ssim:.2f}" if np.isfinite(ssim) else DASH
            row[f"PSNR {kind} (dB)"] = (f"{psnr:.1f}" if np.isfinite(psnr) else
                                        "∞" if psnr == math.inf else DASH)
            for metric, v in ((f"ssim_{kind}", ssim), (f"psnr_{kind}", psnr)):
                data.append({"scenario": scenario, "center": center, "optimizer": optimizer,
                             "network": net, "metric": metric, "value": float(v)})
        iters = rec.get("iterations", np.nan)
        row["Iterations"] = f"{int(iters):,}" if np.isfinite(iters) else DASH
        rows.append(row)
    notes = ["The attacker is given the global model the server sent, the client's shared "
             "gradient of one slice, the head mask and, under target: known, the client's CT "
             "slice; never the MR. SSIM (2-D, averaged over the head mask) and PSNR inside the "
             "mask of the reconstructed MR slice against the true one, unclipped: raw = the "
             "reconstruction as it is; fit = after the least-squares gain and offset inside the "
             "mask, because with BatchNorm in train mode and batch 1 the shared gradient is "
             "almost blind to the MR's scale. Every network is attacked on the same slice from "
             "the same initial dummy with the same settings.",
             "UNet: the audited global model (BatchNorm in train mode, as the client trains it); "
             "its score is what the attack recovers from a real client.",
             "UNet without BatchNorm (control): the same architecture at the same input size "
             "with the global model's convolution weights; only where it is recovered (fitted "
             "SSIM near 1, the verdict's gate) does a low UNet score show that the UNet resists "
             "rather than that the attack budget is too weak for this architecture.",
             "MLP (code check): a one-hidden-layer network whose input follows from its gradient "
             "in closed form; it must be recovered, which shows the attack code works, and it "
             "says nothing about the UNet."]
    return Table("inversion", "Gradient inversion (DLG): reconstruction quality",
                 pd.DataFrame(data), [Block(pd.DataFrame(rows))], notes)


def inversion_finding(data: pd.DataFrame) -> Finding:
    """``data``: the tidy frame of :func:`~fedaudit.report.tables.inversion_table`.

    A low UNet score is read only in the settings (scenario, center, optimiser) where the same
    UNet without BatchNorm (network ``control``) reaches fitted SSIM :data:`DLG_CONTROL_OK`:
    there it is the UNet's (its BatchNorm's) resistance, elsewhere it may be the attack budget's
    weakness on this architecture, and with no such setting the finding is "inconclusive". A
    UNet reconstruction at or above :data:`DLG_MODERATE` counts wherever it was made: a slice
    that came back shows the leak whatever the controls reach (as a failed memorising control
    only turns a *low* membership finding inconclusive). The MLP code check (network
    ``code_check``) says whether the attack code itself works."""
    keys = ["scenario", "center", "optimizer"]
    ssim = data[data["metric"] == DLG_METRIC]
    wide = ssim.pivot_table(index=keys, columns="network", values="value", aggfunc="first")
    topic = "Gradient inversion (DLG)"
    if "unet" not in wide.columns or not np.isfinite(wide["unet"]).any():
        return Finding(topic, "inconclusive", "no UNet reconstruction was scored.")
    col = {n: wide[n] if n in wide.columns else pd.Series(np.nan, wide.index)
           for n in ("unet", "control", "code_check")}
    ok = col["control"] >= DLG_CONTROL_OK  # NaN (control not run) is not a pass
    best_control = float(col["control"].max())
    control = (f"fitted SSIM {best_control:.2f}" if np.isfinite(best_control) else "not run")
    check = col["code_check"]
    if check.notna().all() and (check >= DLG_CONTROL_OK).all():
        code = (f"the MLP code check is recovered in every setting (fitted SSIM ≥ "
                f"{check.min():.2f}), so the attack code works")
    elif check.notna().any():
        code = (f"the MLP code check is not recovered{'' if ok.any() else ' either'} (worst "
                f"fitted SSIM {check.min():.2f}; needs ≥ {DLG_CONTROL_OK}), so the attack "
                "setting or code is broken")
    else:
        code = "the MLP code check was not run, so the attack code is untested"

    def where(key: tuple) -> str:
        return f"center {key[1]}, {OPTIMIZERS.get(key[2], key[2])}"

    best_key = col["unet"].idxmax()
    best_unet = float(col["unet"].loc[best_key])
    # the summary table's cells
    summary = {"number": f"best UNet fitted SSIM {best_unet:.2f}",
               "control": f"BatchNorm-free UNet: {control} "
                          f"({'recovered' if ok.any() else 'not recovered'})"}
    whats = {"moderate": "recognisable anatomy comes back",
             "high": "the private slice comes back"}
    if best_unet >= DLG_MODERATE:
        level = Level.HIGH if best_unet >= DLG_HIGH else Level.MODERATE
        return Finding(topic, level,
                       f"{level.value} risk: {whats[level.value]} (best UNet SSIM "
                       f"{best_unet:.2f} after a gain/offset fit, {where(best_key)}): a "
                       f"reconstruction this close shows the leak whatever the controls reach "
                       f"(the BatchNorm-free UNet: best {control}); {code}.", **summary)
    if not ok.any():
        return Finding(topic, Level.INCONCLUSIVE,
                       f"inconclusive: DLG at this budget does not recover even the "
                       f"BatchNorm-free UNet ({control}; needs ≥ {DLG_CONTROL_OK}), so the "
                       f"UNet's best fitted SSIM of {best_unet:.2f} does not show that it "
                       f"resists; {code}.", **summary)
    read = col["unet"][ok]
    read_key = read.idxmax()
    partly = "" if ok.all() else (
        f"; read only in the {int(ok.sum())} of {len(ok)} center × optimiser settings where "
        f"the BatchNorm-free UNet is recovered, {best_unet:.2f} over all")
    return Finding(topic, Level.RESISTS,
                   f"resists at this budget: only coarse shape comes back (best UNet SSIM "
                   f"{float(read.loc[read_key]):.2f} after a gain/offset fit, "
                   f"{where(read_key)}{partly}); {code}.",
                   power=f"the same attack on the same UNet without BatchNorm recovers its "
                         f"slice (fitted SSIM ≥ {col['control'][ok].min():.2f}), so it reaches "
                         "this architecture at this budget.", **summary)




def build_table(inputs: Any, params: Any) -> Table:
    return inversion_table(pd.read_csv(inputs.dlg))


def findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    return [inversion_finding(data)]


def thresholds(settings: dict[str, Any]) -> str:
    return (f"DLG UNet SSIM after a least-squares gain/offset fit ≥ {DLG_HIGH} high, ≥ "
            f"{DLG_MODERATE} moderate, a lower one resists at this budget only where the same "
            f"UNet without BatchNorm (the positive control) reaches fitted SSIM ≥ "
            f"{DLG_CONTROL_OK} (else inconclusive); the MLP "
            f"code check must reach it for the attack code to count as working")


def advice(level: str) -> str:
    """What a reader does about a gradient-inversion finding (the front page's summary table)."""
    return {
        "high": "the server rebuilds a training slice from one update: add update noise (DP) "
                "or larger batches; their price is in the privacy-utility table",
        "moderate": "anatomy leaks from one update: add update noise (DP) or larger batches",
        "inconclusive": "no conclusion: the attack fails its BatchNorm-free control at this "
                        "budget; do not read as safe",
    }.get(str(level), "")
