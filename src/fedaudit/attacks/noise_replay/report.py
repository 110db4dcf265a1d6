"""The noise replay's table (one row per replayed scenario) and its verdict finding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fedaudit.attacks.noise_replay.replay import RECOVERED_SHARE
from fedaudit.defenses.budgets import level_symbol, noise_label
from fedaudit.defenses.noise_source import SIMULATION, SIMULATION_NOTE
from fedaudit.report.levels import Level
from fedaudit.report.tables import DASH, Block, Table, TableError, need
from fedaudit.report.verdict import Finding

TOPIC = "Noise replay: can the server regenerate the clients' noise?"
NEEDED = ["scenario", "round", "center", "defense", "level", "noise_source", "attacked"]


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per scenario: the client-rounds replayed, how many were recovered, the share of noise
    removed (median, min, max), the residual and the control's outcome."""
    need(rows, NEEDED, "noise replay results")
    out = []
    for scenario, sub in rows.groupby("scenario", sort=False):
        hit = sub[sub["attacked"].astype(bool)]
        first = sub.iloc[0]
        row: dict[str, Any] = {
            "scenario": scenario, "defense": first["defense"], "level": float(first["level"]),
            "noise_source": first["noise_source"], "rounds": int(sub["round"].nunique()),
            "client_rounds": len(hit), "not_attacked": int(len(sub) - len(hit))}
        if len(hit):
            removed = hit["removed_share"].astype(float)
            row.update(
                recovered=int(hit["recovered"].astype(bool).sum()),
                removed_median=float(removed.median()), removed_min=float(removed.min()),
                removed_max=float(removed.max()),
                removed_sd_max=float(hit["removed_sd"].astype(float).max()),
                unpowered=int((~hit["powered"].astype(bool)).sum()),
                residual_median=float(hit["residual_norm"].astype(float).median()),
                noise_norm_expected=float(hit["noise_norm_expected"].astype(float).median()),
                parameters=int(hit["parameters"].iloc[0]),
                clip=float(hit["clip"].iloc[0]) if "clip" in hit and
                hit["clip"].notna().any() else np.nan,
                control_recovered=int(hit["control_recovered"].astype(bool).sum()),
                control_cosine_min=float(hit["control_cosine"].astype(float).min()))
        out.append(row)
    return pd.DataFrame(out)


def _fmt(v: float, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if np.isfinite(v) else DASH


def replay_table(data: pd.DataFrame) -> Table:
    view = []
    for _, r in data.iterrows():
        n = int(r["client_rounds"])
        sim = r["noise_source"] == SIMULATION
        source = f"simulation ({SIMULATION_NOTE})" if sim else "OS entropy"
        if n == 0:
            view.append({"Scenario": r["scenario"], "Noise": noise_label(r["defense"]),
                         "Source": source, "Client-rounds": "0",
                         "Noise removed": DASH, "Residual ‖u − n′‖": DASH,
                         "Recovered": "not attacked (only the aggregate is logged)",
                         "Control": DASH})
            continue
        clip = r.get("clip", np.nan)
        residual = f"{r['residual_median']:.4g}" + (
            f" (C = {clip:g})" if np.isfinite(clip) else "")
        view.append({
            "Scenario": r["scenario"],
            "Noise": f"{noise_label(r['defense'])}, "
                     f"{level_symbol(r['defense'])} = {r['level']:g}",
            "Source": source, "Client-rounds": str(n),
            "Noise removed": f"{_fmt(r['removed_median'])} "
                             f"[{_fmt(r['removed_min'])}–{_fmt(r['removed_max'])}] "
                             f"(sd if not regenerated ≤ {r['removed_sd_max']:.2g})",
            "Residual ‖u − n′‖": f"{residual}; noise alone {r['noise_norm_expected']:.4g}",
            "Recovered": f"{int(r['recovered'])}/{n}"
                         + (" — the server removes the noise" if r["recovered"] else ""),
            "Control": f"{int(r['control_recovered'])}/{n} recovered (cos ≥ "
                       f"{r['control_cosine_min']:.6f})"})
    notes = [f"Noise removed: median [min–max] over the scenario's logged client-rounds of "
             f"(‖u − n₀‖² − ‖u − n′‖²) / (2dσ²), n′ the replayed noise, n₀ a null replay from a "
             f"seed the client never used, d the update's size, σ² the noise's per-coordinate "
             f"variance; an update counts as recovered at ≥ {RECOVERED_SHARE}. Without "
             "regeneration the share is 0 with the standard deviation shown (from d, σ² and "
             "the update's norm); a row whose deviation is above a fifth of the threshold "
             "cannot tell the cases apart, and the verdict says so.",
             "Control: the same logged updates, noised by the clients' function with the "
             "seeded simulation source and replayed: the residual must be the clipped update "
             "(cosine ≈ 1)."]
    return Table("noise_replay", "Noise replay: the server regenerates the clients' noise",
                 data, [Block(pd.DataFrame(view))], notes)


def build_table(inputs: Any, params: Any) -> Table:
    if not len(inputs.replays):
        raise TableError("no replayed scenario")
    rows = pd.concat([pd.read_csv(f) for f in inputs.replays], ignore_index=True)
    return replay_table(summarise(rows))


def findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    hit = data[data["client_rounds"] > 0]
    if hit.empty:
        return [Finding(TOPIC, Level.NOTHING, "nothing to attack: no logged update could be "
                        "replayed (the server holds only aggregates).")]
    recovered = hit[hit["recovered"] > 0]
    # the summary table's cells
    n_rec, n_all = int(hit["recovered"].sum()), int(hit["client_rounds"].sum())
    ctl_ok = int((hit["control_recovered"] >= hit["client_rounds"]).sum())
    summary = {"number": f"{n_rec}/{n_all} logged client-rounds' noise removed",
               "control": f"seeded simulation noise recovered in {ctl_ok}/{len(hit)} "
                          "scenarios"}
    if len(recovered):
        parts = []
        for _, r in recovered.iterrows():
            clip = r.get("clip", np.nan)
            parts.append(f"{r['scenario']} ({int(r['recovered'])}/{int(r['client_rounds'])} "
                         f"client-rounds, median {r['removed_median']:.2f} of the noise removed, "
                         f"residual {r['residual_median']:.3g}"
                         + (f" = the clip C {clip:g}" if np.isfinite(clip) and
                            abs(r["residual_median"] - clip) <= 1e-3 * clip else "")
                         + (f"; {SIMULATION_NOTE}" if r["noise_source"] == SIMULATION else "")
                         + ")")
        return [Finding(TOPIC, "high",
                        "high risk: the server regenerates the clients' noise from the config "
                        "and subtracts it, getting back each clipped update: "
                        + "; ".join(parts) + ". That noise protects nothing against the server, "
                        "whatever its ε.", **summary)]
    weak = hit[hit["unpowered"] > 0]
    if len(weak):
        return [Finding(TOPIC, "inconclusive",
                        "inconclusive: no update was recovered, but in "
                        f"{', '.join(weak['scenario'])} the noise is too weak against the "
                        "update for the replay test to tell regenerated noise from fresh noise "
                        f"(sd up to {weak['removed_sd_max'].max():.2g} against the threshold "
                        f"{RECOVERED_SHARE}).", **summary)]
    failed = hit[hit["control_recovered"] < hit["client_rounds"]]
    if len(failed):
        return [Finding(TOPIC, "inconclusive",
                        "inconclusive: no update was recovered, but the control (simulation "
                        f"noise on the same updates) failed for {', '.join(failed['scenario'])}, "
                        "so the replay code shows nothing.", **summary)]
    n = int(hit["client_rounds"].sum())
    return [Finding(TOPIC, Level.NOT_DETECTED,
                    f"not detected: replaying the clients' noise function with everything the "
                    f"server holds removed a median {hit['removed_median'].median():.3f} "
                    f"(at most {hit['removed_max'].max():.3f}) of the noise from {n} logged "
                    f"client-rounds of {', '.join(hit['scenario'])}, where a regenerated noise "
                    "gives 1: the noise comes from the clients' OS entropy, which the server "
                    "cannot reproduce.",
                    power=f"the control (the same updates with seeded simulation noise) is "
                          f"recovered at cosine {hit['control_cosine_min'].min():.4f} to the "
                          f"clipped update, and a replay that removed {RECOVERED_SHARE} of the "
                          f"noise would stand out (sd ≤ {hit['removed_sd_max'].max():.2g} if not "
                          "regenerated).", **summary)]


def thresholds(settings: dict[str, Any]) -> str:
    return (f"noise replay: high when the server's replay removes ≥ {RECOVERED_SHARE} of any "
            "logged update's noise energy; not detected only when none is removed and the control "
            "(seeded simulation noise on the same updates) is recovered")


def advice(level: str) -> str:
    """What a reader does about a noise-replay finding (the front page's summary table)."""
    return {
        "high": "the server removes the clients' DP noise: set noise_source: os_entropy; that "
                "noise protects nothing against the server",
        "inconclusive": "no conclusion: the replay test could not tell; do not read as safe",
    }.get(str(level), "")
