"""The federations a study trains, derived from the config's ``scenarios`` section.

A scenario is one Snakemake wildcard value with a readable name (``baseline``, ``secagg``,
``fedmedian``, ``poison-C-g1.0-fedmedian``, ...), so a user re-runs one by asking for its file,
e.g. ``results/eval/poison-C-g1.0-fedmedian/metrics.csv``.

Paper 000: the baseline is FedAvg + FedProx (μ = 3), SecAgg+ is the FedMIA defence, FedMedian
the poisoning defence; the poisoning grid corrupts one training center at a time with
γ ∈ {0.1, 0.5, 1.0} under FedAvg and FedMedian (Table 3), each compared with the unpoisoned
federation that uses the same aggregation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fedaudit.federation.aggregation import krum_guard

UNPOISONED = {  # built-in name -> (aggregation, secagg)
    "baseline": ("fedavg", False),
    "secagg": ("fedavg", True),
    "fedmedian": ("fedmedian", False),
    "krum": ("krum", False),
    "trimmed_mean": ("trimmed_mean", False),
}
# How aggregation rules are written in tables and figures (paper 000 spelling).
AGGREGATION_LABELS = {"fedavg": "FedAvg", "fedmedian": "FedMedian", "krum": "Krum",
                      "trimmed_mean": "Trimmed mean"}
# SecAgg+ sums masked vectors: the server can only ever compute a (weighted) mean. A robust rule
# "runs" on that single aggregate and silently returns it, so such combinations are refused.
SECAGG_COMPATIBLE = ("fedavg",)
# Names the evaluation uses for its references (fedaudit.evaluation.run.CONSTANT).
RESERVED = ("constant",)


@dataclass(frozen=True)
class Scenario:
    name: str
    aggregation: str = "fedavg"
    secagg: bool = False
    poison_center: str | None = None
    gamma: float = 0.0
    reference: str | None = None  # compared against this scenario (paired Wilcoxon)
    # ``train`` settings this scenario sets differently from the study's (the membership
    # control's memorising budget); a control is trained and attacked but not evaluated.
    train: dict[str, Any] | None = None
    control: str | None = None  # "membership": the FedMIA positive control

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def poison_name(center: str, gamma: float, aggregation: str) -> str:
    """e.g. ``poison-C-g1.0-fedmedian``: one decimal at least, more only when needed."""
    g = f"{gamma:.1f}" if round(gamma, 1) == gamma else f"{gamma:g}"
    return f"poison-{center}-g{g}-{aggregation}"


def _unpoisoned_with(aggregation: str, secagg: bool, names: set[str]) -> str | None:
    for name, (agg, sa) in UNPOISONED.items():
        if agg == aggregation and sa == secagg and name in names:
            return name
    return None


class ScenarioError(ValueError):
    pass


def scenarios_from_config(config: dict[str, Any]) -> dict[str, Scenario]:
    """All scenarios of a validated config, in a stable order; raises ScenarioError if invalid."""
    sc = config["scenarios"]
    train_centers = [c for c, v in config["centers"].items() if v["role"] == "train"]
    out: dict[str, Scenario] = {}
    unpoisoned = sc["unpoisoned"]
    if unpoisoned is None:  # the paper's three, SecAgg+ only where there is something to hide
        unpoisoned = ["baseline", "secagg", "fedmedian"] if len(train_centers) >= 2 \
            else ["baseline", "fedmedian"]
    for name in unpoisoned:
        agg, secagg = UNPOISONED[name]
        out[name] = Scenario(name, agg, secagg)
    grid = sc["poisoning"]
    p_centers = train_centers if grid["centers"] is None else list(grid["centers"])
    for c in p_centers:
        if c not in train_centers:
            raise ScenarioError(f"config key 'scenarios.poisoning.centers': {c!r} is not a train "
                                f"center (train centers: {', '.join(train_centers)})")
    for c in p_centers:
        for gamma in grid["gammas"]:
            for agg in grid["aggregations"]:
                name = poison_name(c, gamma, agg)
                out[name] = Scenario(name, agg, False, c, float(gamma))
    for name, spec in sc["custom"].items():
        if name in RESERVED:
            raise ScenarioError(f"config key 'scenarios.custom.{name}': the name is reserved "
                                "for the constant predictor every scenario is compared with")
        if name in out:
            raise ScenarioError(f"config key 'scenarios.custom.{name}': the name is already "
                                "used by a built-in scenario")
        pc = spec["poison_center"]
        if pc is not None and pc not in train_centers:
            raise ScenarioError(f"config key 'scenarios.custom.{name}.poison_center': {pc!r} "
                                "is not a train center")
        out[name] = Scenario(name, spec["aggregation"], spec["secagg"], pc, float(spec["gamma"]),
                             spec["reference"])
    for s in out.values():
        if s.secagg and s.aggregation not in SECAGG_COMPATIBLE:
            raise ScenarioError(
                f"scenario {s.name!r}: SecAgg+ with {s.aggregation} is not possible: under "
                "SecAgg+ the server only sees the sum of masked updates, so median/Krum/trimmed "
                "mean would silently become the mean. Use aggregation fedavg with secagg.")
        n_train = len(train_centers)
        if s.secagg and n_train < 2:
            raise ScenarioError(f"scenario {s.name!r}: SecAgg+ needs at least 2 train centers "
                                f"(the study has {n_train}): one client's 'aggregate' is its "
                                "own update")
        if s.aggregation == "krum":
            try:
                krum_guard(n_train, config["train"]["krum_f"])
            except ValueError as err:
                raise ScenarioError(f"scenario {s.name!r}: {err}; the study has {n_train} "
                                    "train centers") from err
    names = set(out)
    for name, s in list(out.items()):
        ref = s.reference
        if ref is None and name != "baseline" and s.control is None:
            if s.poison_center is not None:
                ref = _unpoisoned_with(s.aggregation, s.secagg, names)
            ref = ref or ("baseline" if "baseline" in names else None)
        if ref is not None and ref not in names:
            raise ScenarioError(f"scenario {name!r}: reference {ref!r} is not a configured "
                                "scenario")
        out[name] = Scenario(s.name, s.aggregation, s.secagg, s.poison_center, s.gamma, ref,
                             s.train, s.control)
    ctl = sc["membership_control"]
    if ctl["enabled"]:
        name = ctl["name"]
        if name in out or name in RESERVED:
            raise ScenarioError(f"config key 'scenarios.membership_control.name': {name!r} is "
                                "already a scenario's name")
        if len(train_centers) < 2:
            raise ScenarioError("config key 'scenarios.membership_control': FedMIA needs at "
                                "least 2 train centers (the null comes from the other clients)")
        out[name] = Scenario(name, "fedavg", False, train=dict(ctl["train"]),
                             control="membership")
    only = sc["only"]
    if only is not None:
        unknown = [n for n in only if n not in out]
        if unknown:
            raise ScenarioError(f"config key 'scenarios.only': unknown scenario(s) "
                                f"{', '.join(unknown)} (known: {', '.join(out)})")
        out = {n: out[n] for n in out if n in only}
    return out


# Keys of the config's ``train`` section that change how a federation is computed, not what:
# thread counts, DataLoader workers and the backend give the same model (tested), so changing them
# must not re-train anything. Every other key is a Snakemake param of the train rule.
EXECUTION_KEYS = ("threads", "num_workers", "backend", "ray")
# Keys that only some aggregations or SecAgg+ read; other scenarios do not depend on them.
_SCENARIO_KEYS = {"secagg": lambda s: s.secagg, "krum_f": lambda s: s.aggregation == "krum",
                  "trim_beta": lambda s: s.aggregation == "trimmed_mean"}


def result_settings(train: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """The ``train`` settings that determine ``scenario``'s model: its rule's params, so that
    changing one re-trains exactly the scenarios that read it (and nothing for the
    :data:`EXECUTION_KEYS`)."""
    merged = dict(train)
    for key, value in (scenario.train or {}).items():
        # nested sections merge key by key: setting augment.enabled keeps the study's angles
        merged[key] = ({**train[key], **value} if isinstance(value, dict)
                       and isinstance(train.get(key), dict) else value)
    return {k: v for k, v in merged.items()
            if k not in EXECUTION_KEYS and _SCENARIO_KEYS.get(k, lambda _: True)(scenario)}


def evaluated(scenarios: dict[str, Scenario]) -> list[str]:
    """The scenarios whose synthesis is evaluated: all but controls, which are built to
    memorise a few patients, not to synthesise CT for others."""
    return [n for n, s in scenarios.items() if s.control is None]


def membership_control(scenarios: dict[str, Scenario]) -> str | None:
    return next((n for n, s in scenarios.items() if s.control == "membership"), None)
