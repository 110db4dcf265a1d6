"""Verdicts across training seeds: one seed is not a finding.

A federation trained twice with different seeds (config ``seeds``: the same patients, another
initialisation, slice sampling and augmentation) gives different numbers; a verdict line that
reads one run may report run-to-run variation as a risk or a cost, or miss a risk another run
shows. The rules every cross-seed line follows:

- **a level holds** when every seed gives it; the line then says on how many seeds;
- **a level that varies** is reported as varying, with the level of every seed and the per-seed
  range of its number; the line takes the most severe level that occurred (a risk one training
  run of the same setting shows is a risk the deployment can meet);
- **a cost or an effect is claimed** only when, on every seed, it exceeds the seed-to-seed
  spread of the reference it is measured against (:func:`beyond_spread`); with one seed the
  spread is unknown and no cost is claimed;
- **one seed** is said on the line.

The spread is the range (max − min) of the reference's number over the seeds: with two or
three seeds it is the only honest summary (a standard deviation of two values is the range
over √2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import pandas as pd

from fedaudit.report.levels import NEEDS_POWER, SEVERITY, Finding, Level, worst


def spread(values: Sequence[float]) -> float:
    """The seed-to-seed range of ``values`` (one per seed; non-finite ones ignored); NaN for
    fewer than two finite values."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return max(finite) - min(finite) if len(finite) >= 2 else math.nan


def beyond_spread(effects: Sequence[float], reference: Sequence[float]) -> bool:
    """Whether an effect (one per seed, e.g. SecAgg+'s MAE minus the federation's without it)
    exceeds, on every seed, the seed-to-seed spread of the ``reference`` numbers (the
    federation's MAE on each seed). False when the spread is unknown (one seed) or an effect is
    not finite."""
    width = spread(reference)
    return (math.isfinite(width) and len(effects) > 0
            and all(math.isfinite(float(e)) and float(e) > width for e in effects))


def range_text(values: Mapping[int, float], fmt: str = ".2f", unit: str = "") -> str:
    """``0.55–0.62`` over the seeds (one value: that value)."""
    finite = [v for v in values.values() if math.isfinite(float(v))]
    if not finite:
        return "n/a"
    lo, hi = min(finite), max(finite)
    text = f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}–{hi:{fmt}}"
    return text + unit


def _seeds_text(seeds: Sequence[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def across_seeds(by_seed: Sequence[tuple[int, Finding]], *, number: str = "",
                 values: Mapping[int, float] | None = None, fmt: str = ".2f",
                 unit: str = "") -> Finding:
    """One verdict line from the same finding computed on every seed (``by_seed``: (seed,
    finding), the study's seed first). ``number`` names the finding's key number and
    ``values`` gives it per seed, for the range the line states.

    The first seed's sentence carries the detail; the line adds whether the level held on
    every seed or varied (then the level on each seed, and the line's level is the most severe
    that occurred, with that seed's power where the level needs one)."""
    if not by_seed:
        raise ValueError("across_seeds needs the finding of at least one seed")
    first_seed, first = by_seed[0]
    topics = {f.topic for _, f in by_seed}
    if len(topics) > 1:
        raise ValueError(f"across_seeds: findings of different topics {sorted(topics)}")
    seeds = [s for s, _ in by_seed]
    span = (f"{number} {range_text(values, fmt, unit)} across {_seeds_text(seeds)}"
            if number and values else "")
    rng = f" ({span})" if span else ""
    if len(by_seed) == 1:
        return replace(first, sentence=first.sentence.rstrip()
                       + f" Read on one training seed ({first_seed}): its run-to-run "
                       "variation is not measured.",
                       number=f"{first.number} (one seed)" if first.number else "")
    levels = {s: f.level for s, f in by_seed}
    if len(set(levels.values())) == 1:
        # a claim that holds on every seed: the largest p-value (intersection-union test)
        p_all = [f.p_value for _, f in by_seed]
        return replace(first, sentence=first.sentence.rstrip()
                       + f" The same level on all {len(seeds)} training seeds{rng}.",
                       p_value=max(p_all) if all(math.isfinite(p) for p in p_all)
                       else math.nan, number=_with_span(first.number, span))
    level = worst(list(levels.values()))
    assert level is not None
    groups = {lv: [s for s in seeds if levels[s] == lv] for lv in SEVERITY
              if lv in levels.values()}
    varies = "; ".join(f"{lv.value} on {_seeds_text(ss)}" for lv, ss in groups.items())
    others = " ".join(f"Seed {s}: {f.sentence.rstrip()}" for s, f in by_seed[1:])
    power = next((f.power for _, f in by_seed if f.level == level), "")
    sentence = (f"varies across training seeds: {varies}{rng}; the line reads the most severe. "
                f"Seed {first_seed}: {first.sentence.rstrip()} {others}")
    # the claim of the most severe seed(s), corrected for the seeds it was picked from
    p_worst = [f.p_value for _, f in by_seed if f.level == level and math.isfinite(f.p_value)]
    severe = next(f for _, f in by_seed if f.level == level)
    return Finding(first.topic, level, sentence,
                   power=power if level in NEEDS_POWER else "",
                   p_value=min(1.0, min(p_worst) * len(by_seed)) if p_worst else math.nan,
                   number=_with_span(severe.number, span or "varies across seeds"),
                   control=severe.control, attacker=first.attacker, advice=first.advice)


def _with_span(number: str, span: str) -> str:
    """A finding's key number (the first seed's, or the most severe seed's) with its range
    across the seeds, for the front page's summary table."""
    return "; ".join(t for t in (number, span) if t)


def by_seed(frame: pd.DataFrame) -> list[tuple[int | None, pd.DataFrame]]:
    """A tidy table with a ``seed`` column (one value per training seed, NaN on rows that hold
    for every seed, such as the constant predictor's) split into one frame per seed, each with
    the seed-free rows, in the order the seeds first appear (the study's seed first). A table
    without the column (one run per federation) is one frame of seed None."""
    if "seed" not in frame.columns:
        return [(None, frame)]
    shared = frame[frame["seed"].isna()]
    seeds = list(dict.fromkeys(int(v) for v in frame["seed"].dropna()))
    if not seeds:
        return [(None, frame)]
    return [(s, pd.concat([frame[frame["seed"] == s], shared])) for s in seeds]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979, Scand. J. Statist. 6:65-70): sort the m
    p-values, multiply the i-th smallest (0-based) by m − i, carry the running maximum, cap at
    1. Non-finite p-values are left as they are and do not count in m."""
    idx = [i for i, p in enumerate(p_values) if math.isfinite(float(p))]
    m = len(idx)
    out = [float(p) for p in p_values]
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda j: float(p_values[j]))):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


__all__ = ["Level", "across_seeds", "beyond_spread", "by_seed", "holm", "range_text",
           "spread"]
