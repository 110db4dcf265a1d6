"""The trap-weight attack's tables (paper 002 Tables 1 and 2 as layouts, and the defenses) and
its verdict findings.

The verdict reads one setting fixed before any result: the first attacked scenario, training
mode, initialisation and federation size in the config, at the smallest batch size (paper 002's
headline, batch 8), pooled over its clients -- never the best of the settings measured. Its level
comes from the lower bound of the exact (Clopper-Pearson) 95 % interval of the share of attacked
slices recovered less the null's share (real slices of other patients that pass the same
criterion), read only when the positive control (the untrained UNet at batch 1, where the closed
form is exact) recovers every slice. Slices of one patient are not independent, so the
interval is a slice-level one; the table gives the patients' count beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fedaudit.defenses.weight_audit.verdict import is_alarm
from fedaudit.report.intervals import binomial_tail, clopper_pearson
from fedaudit.report.levels import Level, beyond_null
from fedaudit.report.tables import DASH, NO, YES, Block, Table, TableError, need
from fedaudit.report.verdict import Finding

TOPIC = "Malicious server (trap weights)"
TRAP_HIGH = 0.5  # lower 95 % bound of the share of slices recovered, beyond the null's
CONTROL_OK = 0.99  # the positive control's mean SSIM (an exact closed form gives ~1)
MODES = {"gradient": "one SGD step", "local": "configured local training"}
INITS = {"trap": "trap weights", "binning": "binning"}


def _fmt(v: float, digits: int) -> str:
    return f"{v:.{digits}f}" if np.isfinite(v) else DASH


def _pooled(rows: pd.DataFrame) -> dict[str, float]:
    """Recovered / attacked over a setting's rows, SSIM / MSE / PSNR means over the recovered
    slices (weighted by each row's recovered count), the null's count."""
    rec, att = int(rows["recovered"].sum()), int(rows["attacked"].sum())
    w = rows["recovered"].to_numpy(float)
    out = {"recovered": rec, "attacked": att,
           "null_recovered": float(rows["null_recovered"].sum(min_count=1))}
    for m in ("ssim", "mse", "psnr"):
        v = rows[f"mean_{m}_recovered"].to_numpy(float)
        ok = w > 0
        out[m] = float(np.sum(v[ok] * w[ok]) / w[ok].sum()) if ok.any() else float("nan")
    lo, hi = clopper_pearson(rec, att)
    out.update({"share": rec / att if att else float("nan"), "ci_low": lo, "ci_high": hi})
    return out


def slices_table(data: pd.DataFrame) -> Table:
    """Paper 002 Table 1's layout per scenario, mode and initialisation: one row per
    federation size x batch size with recovered / attacked (95 % CI of the share), the SSIM,
    MSE and PSNR of the recovered slices, and the null reference."""
    need(data, ["scenario", "mode", "init", "clients", "batch_size", "setting", "view",
                "recovered", "attacked", "null_recovered", "mean_ssim_recovered",
                "mean_mse_recovered", "mean_psnr_recovered"], "trap-weight table")
    keys = ["scenario", "mode", "init", "setting", "clients", "batch_size", "view"]
    tidy, rows = [], []
    for key, grp in data.groupby(keys, sort=False):
        pooled = _pooled(grp)
        # a batch size that runs the same round as a smaller one (steps.round_key) is not run
        # again: its rows are that round's
        first = (int(grp["computed_at_batch"].iloc[0]) if "computed_at_batch" in grp
                 and grp["computed_at_batch"].notna().all() else int(key[5]))
        tidy.append({**dict(zip(keys, key, strict=True)), **pooled, "computed_at_batch": first})
    tidy_df = pd.DataFrame(tidy)
    last: tuple = ()
    for _, r in tidy_df.iterrows():
        head = (r["scenario"], r["mode"], r["init"])
        label = "control: untrained UNet" if r["setting"] == "control" else ""
        rows.append({
            "Scenario": r["scenario"] if head != last else "",
            "Training": MODES.get(r["mode"], r["mode"]) if head != last else "",
            "Init": INITS.get(r["init"], r["init"]) if head != last else "",
            "Clients": f"{int(r['clients'])}{' (' + label + ')' if label else ''}",
            "Server sees": "each client" if r["view"] == "client" else "the sum (SecAgg+)",
            "Batch": (f"{int(r['batch_size'])}" if r["computed_at_batch"] == r["batch_size"]
                      else f"{int(r['batch_size'])} (as {int(r['computed_at_batch'])})"),
            "Recovered": f"{int(r['recovered'])}/{int(r['attacked'])}",
            "95% CI": f"{r['ci_low']:.2f}–{r['ci_high']:.2f}" if np.isfinite(r["ci_low"])
            else DASH,
            "SSIM": _fmt(r["ssim"], 3), "MSE": _fmt(r["mse"], 5), "PSNR (dB)": _fmt(r["psnr"], 1),
            "Null": DASH if not np.isfinite(r["null_recovered"])
            else f"{int(r['null_recovered'])}/{int(r['attacked'])}"})
        last = head
    notes = [
        "Recovered: attacked slices matched (Hungarian assignment on SSIM) by a reconstruction "
        "with SSIM ≥ the threshold (paper 003's success criterion), over what the clients "
        "trained on in the trap round; SSIM, MSE and PSNR are means over the recovered slices "
        "(MR on [0, 1]). 95% CI: exact binomial interval of the recovered share, over slices "
        "(slices of one patient are not independent).",
        "Null: the same matching with real MR slices of other patients (the next client's "
        "batch) as the 'reconstructions': what the criterion grants without any leak (for the "
        "SecAgg+ sum, its clients' nulls added up). Only a count clearly above it is a leak.",
        "Control: the untrained UNet (the federation's initial weights) at batch 1, where the "
        "closed form is exact: every slice must come back; only then does a low count read as "
        "resistance.",
        "Batch sizes larger than a client's trap-round data are capped by it (the attacked "
        "count shows what the clients really trained on). 'B (as B′)': at batch B every "
        "client trains its round's slices in the same batches as at B′, so the round is the "
        "same (same server, seeds, slices and updates) and is run once."]
    return Table("trap_weights", "Malicious server (trap weights): 2-D slices recovered",
                 tidy_df, [Block(pd.DataFrame(rows))], notes)


def volumes_table(data: pd.DataFrame) -> Table:
    """Paper 002 Table 2's layout: per scenario, center and batch size, slices recovered /
    depth, 3-D SSIM and PSNR over the recovered slices, of the oracle-reassembled volume and of
    the non-oracle ordering with its Kendall tau."""
    need(data, ["scenario", "center", "batch_size", "slices_recovered", "depth",
                "ssim_3d_recovered", "psnr_3d_recovered", "ssim_3d_oracle", "psnr_3d_oracle",
                "ssim_3d_no_oracle", "psnr_3d_no_oracle", "order_kendall_tau"],
         "trap-weight 3-D table")
    rows = []
    for _, r in data.iterrows():
        rows.append({"Scenario": r["scenario"], "Center": r["center"],
                     "Batch": int(r["batch_size"]),
                     "Slices/depth": f"{int(r['slices_recovered'])}/{int(r['depth'])}",
                     "SSIM (recovered)": _fmt(r["ssim_3d_recovered"], 3),
                     "PSNR (recovered)": _fmt(r["psnr_3d_recovered"], 1),
                     "SSIM (volume, oracle)": _fmt(r["ssim_3d_oracle"], 3),
                     "PSNR (volume, oracle)": _fmt(r["psnr_3d_oracle"], 1),
                     "SSIM (no oracle)": _fmt(r["ssim_3d_no_oracle"], 3),
                     "Kendall |τ|": _fmt(r["order_kendall_tau"], 2)})
    notes = ["Each client's first training volume (its head-containing axial slices) is sent "
             "in order, B slices per trap round, by the server-supplied preprocessing; the "
             "server engages that client alone. Oracle: recovered slices placed at their index "
             "(missing ones zero); no oracle: the recovered slices ordered by neighbour "
             "similarity alone (direction unidentifiable: the better one is scored), compared "
             "with the same slices in true order."]
    return Table("trap_weights_3d", "Malicious server (trap weights): 3-D volumes",
                 data, [Block(pd.DataFrame(rows))], notes)


def false_alarms(histories: list[pd.DataFrame], threshold: float) -> tuple[int, int, float]:
    """(alarms, audited client-rounds, largest change) of the weight audit over honest
    training rounds (``history.tsv``'s ``audit_score`` / ``audit_flags``, threshold applied
    here, :func:`fedaudit.defenses.weight_audit.audit.is_alarm`)."""
    alarms = audited = 0
    worst = float("nan")
    for h in histories:
        if "audit_score" not in h.columns:
            continue
        scores = pd.to_numeric(h["audit_score"], errors="coerce").to_numpy(float)
        flags = (h["audit_flags"].astype("string").fillna("") if "audit_flags" in h.columns
                 else pd.Series("", index=h.index, dtype="string"))
        alarms += sum(is_alarm(f, v, threshold) for f, v in zip(flags, scores, strict=True))
        audited += len(h)
        if np.isfinite(scores).any():
            worst = float(np.nanmax([worst, np.nanmax(scores)]))
    return alarms, audited, worst


def _client_view(message: object, width: int = 200) -> str:
    """The client's own words from a failed round's message (the server's wrapping cut)."""
    if not isinstance(message, str):
        return ""
    start = message.find("the client refuses")
    return (message[start:] if start >= 0 else message)[:width]


def defenses_table(defenses: pd.DataFrame, histories: list[pd.DataFrame],
                   threshold: float) -> Table:
    """Per scenario, malicious server (front block / stealth) and defense: refused?, alarms
    among the clients, slices recovered; and the weight audit's false alarms over every honest
    round of every trained scenario."""
    need(defenses, ["scenario", "server", "defense", "round_refused", "alarms", "clients",
                    "recovered", "attacked", "message"], "trap-weight defense table")
    alarms, audited, worst = false_alarms(histories, threshold)
    rows, tidy = [], []
    servers = {"front": "inserted Linear+ReLU block", "stealth": "trap weights in conv 1"}
    for _, r in defenses.iterrows():
        refused = bool(r["round_refused"])
        detected = refused or int(r["alarms"]) > 0
        rows.append({"Scenario": r["scenario"], "Server": servers.get(r["server"], r["server"]),
                     "Defense": r["defense"].replace("_", " "),
                     "Round refused": YES if refused else NO,
                     "Clients refusing or alarmed": f"{int(r['alarms'])}/{int(r['clients'])}",
                     "Recovered": DASH if refused or not np.isfinite(r["attacked"])
                     else f"{int(r['recovered'])}/{int(r['attacked'])}",
                     "What the client saw": _client_view(r["message"])})
        tidy.append({"scenario": r["scenario"], "server": r["server"],
                     "defense": r["defense"], "detected": detected,
                     "alarms": int(r["alarms"]), "clients": int(r["clients"])})
    fa = pd.DataFrame([{"Honest client-rounds audited": audited, "False alarms": alarms,
                        "Largest honest change": _fmt(worst, 3),
                        "Alarm threshold": f"{threshold:g}"}])
    tidy_df = pd.DataFrame(tidy)
    data = pd.concat([tidy_df, pd.DataFrame([{"scenario": "all", "server": "honest",
                                              "defense": "weight_audit", "detected": alarms > 0,
                                              "alarms": alarms, "clients": audited}])],
                     ignore_index=True)
    notes = ["Each malicious round follows one honest round (the clients' audit compares a "
             "received model with the one before). Architecture check: the client compares "
             "the definition's SHA-256 and the tensors' names and shapes with those agreed at "
             "enrolment and refuses a differing round. Weight audit: an alarm for a tensor that "
             "changed by more than the threshold of its norm, a new or reshaped tensor, or the "
             "trap-weight signature on the first layer.",
             "The stealthy server keeps the architecture; a convolution's update ratio is a "
             "weighted mean of 3×3 patches, never a slice, so it recovers no slice here.",
             "Under update noise (the DP-FedAvg levels, measured here beside the attacked "
             "scenarios) the audit scores a kernel's change beyond what the federation's own "
             "noise explains (its expected norm σ·√(Σw²)·√k plus 5 sd, σ = z·C): DP noise no "
             "longer raises alarms, and a trap that changes a kernel by less than the noise "
             "hides in it."]
    return Table("trap_weights_defenses", "Malicious server: the clients' defenses", data,
                 [Block(pd.DataFrame(rows)), Block(fa, title="Weight audit over honest rounds")],
                 notes)


def trap_finding(data: pd.DataFrame, settings: dict[str, Any]) -> Finding:
    """The verdict on the fixed setting (module docstring)."""
    sel = data[(data["setting"] == "attack") & (data["mode"] == settings["mode"])
               & (data["init"] == settings["init"]) & (data["view"] == "client")]
    if settings["scenario"] is not None:
        sel = sel[sel["scenario"] == settings["scenario"]]
    if sel.empty:
        return Finding(TOPIC, "inconclusive", "the verdict's setting was not measured.")
    sel = sel[sel["clients"] == sel["clients"].min()]
    sel = sel[sel["batch_size"] == sel["batch_size"].min()]
    r = sel.iloc[0]
    ctl = data[(data["setting"] == "control") & (data["init"] == settings["init"])]
    control_ok = bool(len(ctl)) and bool((ctl["ssim"] >= CONTROL_OK).all()) and bool(
        (ctl["recovered"] == ctl["attacked"]).all())
    where = (f"scenario {r['scenario']}, {MODES.get(r['mode'], r['mode'])}, "
             f"{INITS.get(r['init'], r['init'])}, {int(r['clients'])} clients, batch "
             f"{int(r['batch_size'])}")
    counts = (f"{int(r['recovered'])}/{int(r['attacked'])} slices recovered at SSIM ≥ "
              f"{settings['threshold']} (95% CI {r['ci_low']:.2f}–{r['ci_high']:.2f}; mean "
              f"SSIM {_fmt(r['ssim'], 2)}; null "
              f"{DASH if not np.isfinite(r['null_recovered']) else int(r['null_recovered'])})")
    # what the criterion grants without a leak (the null) is not credited to the attack
    null_share = r["null_recovered"] / r["attacked"] if np.isfinite(r["null_recovered"]) else 0.0
    level = beyond_null(r["ci_low"] - null_share, TRAP_HIGH)
    # the summary table's cells
    null = DASH if not np.isfinite(r["null_recovered"]) else int(r["null_recovered"])
    summary = {"number": f"{int(r['recovered'])}/{int(r['attacked'])} slices (95% CI "
                         f"{r['ci_low']:.2f}–{r['ci_high']:.2f}; null {null})",
               "control": "untrained UNet, batch 1: " + ("every slice recovered" if control_ok
                                                         else "not every slice recovered")}
    if level is None and not control_ok:
        return Finding(TOPIC, Level.INCONCLUSIVE,
                       f"inconclusive: {counts}, {where}, but the positive control (untrained "
                       "UNet, batch 1) does not recover every slice, so the attack code or "
                       "setting is broken.", **summary)
    if level is None:
        return Finding(TOPIC, Level.RESISTS,
                       f"resists at this budget: the slices that come back do not exceed the "
                       f"null's share at 95 %: {counts}, {where}; what the clients' defenses "
                       "stop is in the defense table.",
                       power="the positive control (untrained UNet, batch 1) recovers every "
                             "slice.", **summary)
    what = {Level.HIGH: "most private slices come back exactly",
            Level.MODERATE: "private slices come back beyond the null"}[level]
    return Finding(TOPIC, level, f"{level.value} risk: {what}: {counts}, {where}; what the "
                   "clients' defenses stop is in the defense table.",
                   p_value=binomial_tail(int(r["recovered"]), int(r["attacked"]), null_share),
                   **summary)


def defense_finding(data: pd.DataFrame) -> list[Finding]:
    honest = data[data["server"] == "honest"]
    attacks = data[data["server"] != "honest"]
    if attacks.empty:
        return []
    parts = []
    for (server, defense), g in attacks.groupby(["server", "defense"]):
        parts.append(f"{defense.replace('_', ' ')} vs {server}: detected in "
                     f"{int(g['detected'].sum())}/{len(g)} scenario(s)")
    fa = (f"{int(honest['alarms'].sum())} false alarm(s) over {int(honest['clients'].sum())} "
          "honest client-rounds" if len(honest) else "false alarms not measured")
    missed = attacks[~attacks["detected"].astype(bool)]
    gaps = [f"{server} server by the {defense.replace('_', ' ')} "
            f"({', '.join(sorted(g['scenario']))})"
            for (server, defense), g in missed.groupby(["server", "defense"])]
    sentence = f"{'; '.join(parts)}; weight audit: {fa}"
    if gaps:
        sentence += f"; missed: {', '.join(gaps)}"
    return [Finding("Malicious-server defenses", "info", sentence + ".")]


# --------------------------------------------------------------------------- catalog hooks


def build_slices_table(inputs: Any, params: Any) -> Table:
    return slices_table(pd.concat([pd.read_csv(f) for f in inputs.slices], ignore_index=True))


def build_volumes_table(inputs: Any, params: Any) -> Table:
    return volumes_table(pd.concat([pd.read_csv(f) for f in inputs.volumes],
                                   ignore_index=True))


def build_defenses_table(inputs: Any, params: Any) -> Table:
    if not inputs.defenses:
        raise TableError("no trap-weight defense results")
    return defenses_table(pd.concat([pd.read_csv(f) for f in inputs.defenses],
                                    ignore_index=True),
                          [pd.read_csv(f, sep="\t") for f in inputs.histories],
                          float(params.audit["threshold"]))


def findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    return [trap_finding(data, settings)]


def defense_findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    return defense_finding(data)


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The verdict's setting, fixed by the config's order before any result."""
    trap = config["attacks"]["trap_weights"]
    scenarios = trap["scenarios"] or []
    return {"scenario": scenarios[0] if scenarios else None, "mode": trap["modes"][0],
            "init": trap["inits"][0], "threshold": trap["threshold"]}


def thresholds(settings: dict[str, Any]) -> str:
    return (f"trap weights, the lower 95% bound of the share of slices recovered at SSIM ≥ "
            f"{settings['threshold']} less the null's share (first configured scenario, mode "
            f"and initialisation, the "
            f"study's clients, the smallest batch) ≥ {TRAP_HIGH} high, above 0 moderate; "
            f"at or below 0 it resists at this budget only when the untrained-UNet control "
            f"recovers every slice (SSIM ≥ {CONTROL_OK}), else inconclusive")


def advice(level: str) -> str:
    """What a reader does about a malicious-server finding (the front page's summary table)."""
    return {
        "high": "a malicious server rebuilds private slices: turn on the clients' architecture "
                "check and weight audit (the defenses line says what they stop)",
        "moderate": "private slices leak to a malicious server: turn on the clients' "
                    "architecture check and weight audit",
        "inconclusive": "no conclusion: the attack's own control fails; fix it before reading",
    }.get(str(level), "")
