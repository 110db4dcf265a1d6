"""The federations a study trains, derived from the config's ``scenarios`` section.

A scenario is one Snakemake wildcard value with a readable name (``baseline``, ``secagg``,
``fedmedian``, ``poison-C-g1.0-fedmedian``, ...), so a user re-runs one by asking for its file,
e.g. ``results/eval/poison-C-g1.0-fedmedian/metrics.csv``.

A scenario is a composition from the threat catalog (:mod:`fedaudit.catalog`): an aggregation
rule with its parameters, defenses, malicious clients and the server's behaviour; the built-in
grid below composes paper 000's. Paper 000: the baseline is FedAvg + FedProx (μ = 3), SecAgg+ is
the FedMIA defence, FedMedian the poisoning defence; the poisoning grid corrupts one training
center at a time with γ ∈ {0.1, 0.5, 1.0} under FedAvg and FedMedian (Table 3), each compared
with the unpoisoned federation that uses the same aggregation. The update-noise grid
(``scenarios.noise``) adds one FedAvg federation per noise level whose clients perturb the
update they send: Laplace noise of scale b (paper 003 §V, ``laplace-b<b>``) or DP-FedAvg's clip
and Gaussian noise with multiplier z (McMahan et al. 2018, Alg. 1, ``dp-z<z>``) -- or, as an
option, whose clients train with sample-level DP-SGD at noise multiplier σ (Abadi et al. 2016,
Alg. 1, ``dpsgd-z<σ>``; their UNet is the GroupNorm one, :mod:`fedaudit.defenses.dp_sgd`); the
level travels in the scenario's defense entry, which is how the attacks learn it
(:func:`noise_defense`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import jsonschema

from fedaudit.catalog import (
    Catalog,
    NoiseFamily,
    catalog,
    fragment,
    fragment_defaults,
    loaded_noise_families,
    noise_spec,
    resolve,
)

# Names the evaluation uses for its references (fedaudit.evaluation.run.CONSTANT).
RESERVED = ("constant",)
SECAGG = "secagg"
WEIGHT_AUDIT = "weight_audit"
POISONING = "poisoning"


def is_noise(name: str) -> bool:
    """Whether the defense ``name`` adds privacy noise (its spec declares a
    :class:`fedaudit.catalog.NoiseFamily`; the catalog loads only the plugins' spec files, so
    the federation's client may ask without loading the defenses' code)."""
    return noise_spec(name) is not None


def noise_on_update(name: str) -> bool:
    """Whether the defense ``name`` adds its noise to the update a client sends (Laplace,
    DP-FedAvg; not DP-SGD, whose noise is inside the local steps): a client mod, noise the
    server could try to subtract, noise every client sees in each new global model."""
    spec = noise_spec(name)
    return spec is not None and spec.noise is not None and spec.noise.on_update


def dp_on_update(name: str) -> bool:
    """Whether the defense ``name`` adds noise with a DP budget to the update a client sends
    (DP-FedAvg; not Laplace, which has no budget, nor DP-SGD, whose noise is in the steps)."""
    return noise_on_update(name) and noise_family(name).budget is not None


def noise_family(name: str) -> NoiseFamily:
    """The noise family of the defense ``name`` (an error for one that adds no noise)."""
    spec = noise_spec(name)
    if spec is None or spec.noise is None:
        raise NoiseSettingError(f"{name!r} is not a noise defense (known: "
                                f"{', '.join(loaded_noise_families())})")
    return spec.noise


class NoiseSettingError(ValueError):
    """A noise defense entry that cannot be applied (unknown name, missing or bad level)."""


def noise_defense(scenario_defenses: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The scenario's noise defense entry (``laplace_noise``, ``dp_fedavg`` or ``dp_sgd``), or
    None.

    ``scenario_defenses`` is a scenario's ``defenses`` (``Scenario.defenses``: dicts with a
    ``name``). At most one noise defense can shape an update: two would noise it twice with
    levels no table could name, so that is an error."""
    found = [dict(d) for d in scenario_defenses if is_noise(d["name"])]
    if len(found) > 1:
        raise NoiseSettingError(
            f"a scenario can add noise to the updates in one way only; it names "
            f"{' and '.join(d['name'] for d in found)}. Use one of them per scenario.")
    return found[0] if found else None


def aggregation_label(name: str) -> str:
    """How an aggregation rule is written in tables and figures (paper 000 spelling: its
    AggregatorSpec's label); an unregistered name as it is."""
    spec = catalog().aggregators.get(name)
    return name if spec is None else spec.label


@dataclass(frozen=True)
class Scenario:
    """One federation, composed from the catalog: an aggregation rule with its parameters, the
    defenses it switches on (each with its settings), the malicious clients
    (``client_attacks``: ``{"name", "center", **params}``) and the server's behaviour. Every
    setting that shapes the model is in here, resolved from the config, so the train rule's
    params track it."""

    name: str
    aggregation: str = "fedavg"
    aggregation_params: dict[str, Any] = field(default_factory=dict)
    defenses: tuple[dict[str, Any], ...] = ()  # {"name": ..., **settings}
    client_attacks: tuple[dict[str, Any], ...] = ()
    server: str = "honest"
    reference: str | None = None  # compared against this scenario (paired Wilcoxon)
    # ``train`` settings this scenario sets differently from the study's (the membership
    # control's memorising budget); a control is trained and attacked but not evaluated.
    train: dict[str, Any] | None = None
    control: str | None = None  # "membership": the FedMIA positive control
    # A replica (config ``seeds``): the same federation trained with another seed; None: the
    # study's seed. ``replica_of`` names the scenario it repeats.
    seed: int | None = None
    replica_of: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scenario:
        d = dict(d)
        d["defenses"] = tuple(dict(x) for x in d.get("defenses", ()))
        d["client_attacks"] = tuple(dict(x) for x in d.get("client_attacks", ()))
        return cls(**d)

    def defense(self, name: str) -> dict[str, Any] | None:
        return next((d for d in self.defenses if d["name"] == name), None)

    @property
    def defense_names(self) -> list[str]:
        return [d["name"] for d in self.defenses]

    @property
    def secagg(self) -> bool:
        return self.defense(SECAGG) is not None

    @property
    def _poisoning(self) -> dict[str, Any] | None:
        return next((a for a in self.client_attacks if a["name"] == POISONING), None)

    @property
    def poison_center(self) -> str | None:
        p = self._poisoning
        return None if p is None else p["center"]

    @property
    def gamma(self) -> float:
        p = self._poisoning
        return 0.0 if p is None else float(p["gamma"])


def hides_replies(scenario: Scenario) -> bool:
    """Whether ``scenario`` runs a privacy defense (SecAgg+ or a noise family): under one a
    client's reply carries only its update and its center's name; the loss, validation score,
    throughput and slice count it would add are per-client side channels
    (fedaudit.federation.client_record)."""
    return any(d == SECAGG or is_noise(d) for d in scenario.defense_names)


def scenario_of(name: str, aggregation: str = "fedavg", secagg: bool = False,
                poison_center: str | None = None, gamma: float = 0.0, *,
                aggregation_params: dict[str, Any] | None = None,
                secagg_settings: dict[str, Any] | None = None, **rest: Any) -> Scenario:
    """The built-in grid's shorthand: FedAvg/FedMedian/... with or without SecAgg+ and with or
    without one poisoned center (paper 000's scenarios)."""
    if secagg and secagg_settings is None:  # the schema's defaults, as a config without them
        secagg_settings = fragment_defaults(catalog().defenses[SECAGG].folder)
    defenses = ({"name": SECAGG, **(secagg_settings or {})},) if secagg else ()
    attacks = (({"name": POISONING, "center": poison_center, "gamma": float(gamma)},)
               if poison_center is not None else ())
    return Scenario(name, aggregation, dict(aggregation_params or {}), defenses, attacks,
                    **rest)


def poison_name(center: str, gamma: float, aggregation: str) -> str:
    """e.g. ``poison-C-g1.0-fedmedian``: one decimal at least, more only when needed."""
    g = f"{gamma:.1f}" if round(gamma, 1) == gamma else f"{gamma:g}"
    return f"poison-{center}-g{g}-{aggregation}"


def _level_text(x: float) -> str:
    """One decimal at least, more only when needed (``1.0``, ``0.5``, ``0.001``)."""
    return f"{x:.1f}" if round(x, 1) == x else f"{x:g}"


def noise_name(defense: str, level: float) -> str:
    """The family's prefix and the level written as in :func:`poison_name`: e.g.
    ``laplace-b0.001`` (Laplace scale b), ``dp-z0.5`` (DP-FedAvg noise multiplier z) or
    ``dpsgd-z1.0`` (DP-SGD noise multiplier σ)."""
    return f"{noise_family(defense).prefix}{_level_text(float(level))}"


def grid_reference(defense: str, settings: dict[str, Any]
                    ) -> tuple[str, tuple[dict[str, Any], ...]] | None:
    """The scenario without noise the grid adds before ``defense``'s levels (its family's
    ``reference`` hook: DP-SGD's GroupNorm UNet), as (name, defenses); None for most."""
    spec = noise_spec(defense)
    if spec is None or spec.noise is None or spec.noise.reference is None:
        return None
    return resolve(spec.noise.reference, spec.package)(settings)


def noise_grid(noise: dict[str, list[float]], settings: dict[str, dict[str, Any]]
               ) -> list[str]:
    """The scenarios of the noise grid (``scenarios.noise``) in config order: one per level,
    each family's reference before its levels when it has one (``settings``: the config's
    ``defenses`` section)."""
    out: list[str] = []
    for defense, levels in noise.items():
        ref = grid_reference(defense, settings.get(defense, {})) if levels else None
        if ref is not None and ref[0] not in out:
            out.append(ref[0])
        out += [noise_name(defense, level) for level in levels]
    return out


def noise_scenario(defense: str, level: float, settings: dict[str, Any], **rest: Any
                   ) -> Scenario:
    """A FedAvg federation whose clients add ``defense``'s noise at ``level`` to their updates
    (DP-SGD: inside every local step); the other settings (clip, delta, ...) are ``settings``
    (``defenses.<name>``)."""
    entry = {"name": defense, **settings, noise_family(defense).level_key: float(level)}
    return Scenario(noise_name(defense, level), "fedavg", defenses=(entry,), **rest)


def _noise_after_secagg(defenses: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    """The defenses with every noise defense after SecAgg+ (its client mod must run inside
    SecAgg+'s so the noise is added before masking: :mod:`fedaudit.defenses.noise_mod`), the
    others' order kept."""
    if not any(d["name"] == SECAGG for d in defenses):
        return defenses
    return (*[d for d in defenses if not is_noise(d["name"])],
            *[d for d in defenses if is_noise(d["name"])])


def _builtin(name: str) -> tuple[str, bool]:
    """A built-in unpoisoned scenario name -> (aggregation, SecAgg+)."""
    if name == "baseline":
        return "fedavg", False
    if name == SECAGG:
        return "fedavg", True
    return name, False


def _unpoisoned_with(aggregation: str, secagg: bool, scenarios: dict[str, Scenario],
                     builtin: list[str]) -> str | None:
    for name in builtin:
        s = scenarios[name]
        if s.aggregation == aggregation and s.secagg == secagg:
            return name
    return None


class ScenarioError(ValueError):
    pass


def _aggregation_params(cat: Catalog, config: dict[str, Any], name: str,
                        overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """The rule's parameters: ``aggregations.<rule>`` (defaults from its schema) with a
    scenario's overrides, checked against the rule's schema fragment."""
    spec = cat.aggregators[name]
    params = {**config["aggregations"][name], **overrides}
    errors = list(jsonschema.Draft202012Validator(fragment(spec.folder)).iter_errors(params))
    if errors:
        raise ScenarioError(f"config key '{where}': {errors[0].message} (parameters of "
                            f"aggregation {name})")
    return params


def _check_composition(cat: Catalog, s: Scenario, n_train: int) -> None:
    for d in s.defenses:
        spec = cat.defenses.get(d["name"])
        if spec is None:
            # a defense whose folder is not installed (one family's reference scenario may name
            # another family: DP-SGD's names group_norm)
            loaded = ", ".join(sorted(cat.defenses))
            raise ScenarioError(f"scenario {s.name!r} names defense {d['name']!r}, which no "
                                f"loaded plugin provides (loaded: {loaded})")
        if spec.compatible is not None and s.aggregation not in spec.compatible:
            raise ScenarioError(f"scenario {s.name!r}: {spec.title} with {s.aggregation} is not "
                                f"possible: {spec.why_incompatible}")
        if n_train < spec.min_clients:
            raise ScenarioError(f"scenario {s.name!r}: {spec.title} needs at least "
                                f"{spec.min_clients} train centers (the study has {n_train})")
    agg = cat.aggregators[s.aggregation]
    if agg.check is not None:
        try:
            resolve(agg.check, agg.package)(n_train, **s.aggregation_params)
        except ValueError as err:
            raise ScenarioError(f"scenario {s.name!r}: {err}; the study has {n_train} "
                                "train centers") from err


@dataclass(frozen=True)
class _Study:
    """What every scenario generator reads: the config, its catalog, the train centers and the
    defenses' settings (each noise entry with the config's ``noise_source``)."""

    config: dict[str, Any]
    cat: Catalog
    train_centers: list[str]
    defense_settings: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, config: dict[str, Any]) -> _Study:
        # every noise defense entry names where its noise comes from (the config's
        # noise_source), so the clients, the tables and the replay attack read it from the
        # scenario itself
        settings = {name: ({**v, "noise_source": config["noise_source"]}
                           if is_noise(name) else v)
                    for name, v in config["defenses"].items()}
        return cls(config, catalog(config["plugins"]),
                   [c for c, v in config["centers"].items() if v["role"] == "train"], settings)

    def params(self, aggregation: str, overrides: dict[str, Any] | None = None,
               where: str | None = None) -> dict[str, Any]:
        return _aggregation_params(self.cat, self.config, aggregation, overrides or {},
                                   where or f"aggregations.{aggregation}")

    def compose(self, name: str, aggregation: str, secagg: bool,
                poison_center: str | None = None, gamma: float = 0.0) -> Scenario:
        return scenario_of(name, aggregation, secagg, poison_center, gamma,
                           aggregation_params=self.params(aggregation),
                           secagg_settings=self.defense_settings[SECAGG])


def _unpoisoned_names(study: _Study) -> list[str]:
    """``scenarios.unpoisoned``; null: the paper's three, SecAgg+ only where there is something
    to hide."""
    names = study.config["scenarios"]["unpoisoned"]
    if names is None:
        names = ["baseline", "secagg", "fedmedian"] if len(study.train_centers) >= 2 \
            else ["baseline", "fedmedian"]
    return list(names)


def _unpoisoned(study: _Study) -> dict[str, Scenario]:
    return {name: study.compose(name, *_builtin(name)) for name in _unpoisoned_names(study)}


def _poisoning_grid(study: _Study) -> dict[str, Scenario]:
    """``scenarios.poisoning``: every center x γ x aggregation (paper 000 Table 3)."""
    grid = study.config["scenarios"]["poisoning"]
    centers = study.train_centers if grid["centers"] is None else list(grid["centers"])
    for c in centers:
        if c not in study.train_centers:
            raise ScenarioError(f"config key 'scenarios.poisoning.centers': {c!r} is not a train "
                                f"center (train centers: {', '.join(study.train_centers)})")
    out = {}
    for c in centers:
        for gamma in grid["gammas"]:
            for agg in grid["aggregations"]:
                name = poison_name(c, gamma, agg)
                out[name] = study.compose(name, agg, False, c, float(gamma))
    return out


def _noise_grid(study: _Study, taken: dict[str, Scenario]) -> dict[str, Scenario]:
    """``scenarios.noise``: one FedAvg federation per level; a family's levels after the
    reference its ``reference`` hook adds (DP-SGD's GroupNorm UNet without DP, so the table
    separates the noise's cost from the architecture's)."""
    fedavg_params = study.params("fedavg")
    out: dict[str, Scenario] = {}
    for defense, levels in study.config["scenarios"]["noise"].items():
        rest: dict[str, Any] = {}
        ref = grid_reference(defense, study.defense_settings[defense]) if levels else None
        if ref is not None:
            out[ref[0]] = Scenario(ref[0], "fedavg", fedavg_params, ref[1])
            rest["reference"] = ref[0]
        for level in levels:
            s = noise_scenario(defense, level, study.defense_settings[defense],
                               aggregation_params=fedavg_params, **rest)
            if s.name in out or s.name in taken:
                raise ScenarioError(f"config key 'scenarios.noise.{defense}': level {level} "
                                    f"gives the name {s.name!r} twice")
            out[s.name] = s
    return out


def _custom(study: _Study, taken: dict[str, Scenario]) -> dict[str, Scenario]:
    """``scenarios.custom``: compositions of the catalog's entries by name."""
    out = {}
    for name, spec in study.config["scenarios"]["custom"].items():
        where = f"scenarios.custom.{name}"
        if name in RESERVED:
            raise ScenarioError(f"config key '{where}': the name is reserved "
                                "for the constant predictor every scenario is compared with")
        if name in taken:
            raise ScenarioError(f"config key '{where}': the name is already "
                                "used by a built-in scenario")
        for i, attack in enumerate(spec["client_attacks"]):
            if attack["center"] not in study.train_centers:
                raise ScenarioError(f"config key '{where}.client_attacks[{i}].center': "
                                    f"{attack['center']!r} is not a train center")
        agg = spec["aggregation"]
        out[name] = Scenario(
            name, agg, study.params(agg, spec["aggregation_params"],
                                    f"{where}.aggregation_params"),
            _noise_after_secagg(tuple({"name": d, **study.defense_settings[d]}
                                      for d in spec["defenses"])),
            tuple(dict(a) for a in spec["client_attacks"]), spec["server"], spec["reference"])
    return out


def _check_all(study: _Study, out: dict[str, Scenario]) -> None:
    n_train = len(study.train_centers)
    for s in out.values():
        _check_composition(study.cat, s, n_train)
        try:
            noise_defense(s.defenses)
        except NoiseSettingError as err:
            raise ScenarioError(f"scenario {s.name!r}: {err}") from err


def _with_references(out: dict[str, Scenario], builtin: list[str]) -> dict[str, Scenario]:
    """Each scenario's reference: its own, else the unpoisoned federation with the same
    aggregation (a poisoned one), else ``baseline``; a reference must be a scenario."""
    names = set(out)
    done = {}
    for name, s in out.items():
        ref = s.reference
        if ref is None and name != "baseline" and s.control is None:
            if s.poison_center is not None:
                ref = _unpoisoned_with(s.aggregation, s.secagg, out, builtin)
            ref = ref or ("baseline" if "baseline" in names else None)
        if ref is not None and ref not in names:
            raise ScenarioError(f"scenario {name!r}: reference {ref!r} is not a configured "
                                "scenario")
        done[name] = replace(s, reference=ref)
    return done


def _membership_control(study: _Study, taken: dict[str, Scenario]) -> dict[str, Scenario]:
    """``scenarios.membership_control``: FedMIA's positive control, trained to memorise."""
    ctl = study.config["scenarios"]["membership_control"]
    if not ctl["enabled"]:
        return {}
    name = ctl["name"]
    if name in taken or name in RESERVED:
        raise ScenarioError(f"config key 'scenarios.membership_control.name': {name!r} is "
                            "already a scenario's name")
    if len(study.train_centers) < 2:
        raise ScenarioError("config key 'scenarios.membership_control': FedMIA needs at "
                            "least 2 train centers (the null comes from the other clients)")
    return {name: Scenario(name, "fedavg", train=dict(ctl["train"]), control="membership")}


def _watched(study: _Study, out: dict[str, Scenario]) -> dict[str, Scenario]:
    """``defenses.weight_audit.monitor``: the weight audit watches every federation (it
    changes no model): what it finds over all honest rounds is the false-alarm count of the
    trap-weight defense table. Its entry carries no settings: it records threshold-free scores
    and never refuses, so changing the threshold re-runs the tables, not the training."""
    if not study.defense_settings.get(WEIGHT_AUDIT, {}).get("monitor"):
        return out
    return {n: s if s.defense(WEIGHT_AUDIT) is not None
            else replace(s, defenses=(*s.defenses, {"name": WEIGHT_AUDIT}))
            for n, s in out.items()}


def _only(config: dict[str, Any], out: dict[str, Scenario]) -> dict[str, Scenario]:
    """``scenarios.only``: the subset a run is restricted to."""
    only = config["scenarios"]["only"]
    if only is None:
        return out
    unknown = [n for n in only if n not in out]
    if unknown:
        raise ScenarioError(f"config key 'scenarios.only': unknown scenario(s) "
                            f"{', '.join(unknown)} (known: {', '.join(out)})")
    return {n: out[n] for n in out if n in only}


def training_seeds(config: dict[str, Any]) -> list[int]:
    """The config's training seeds, the study's ``seed`` first: ``seeds`` null -> [seed]; a
    count N -> seed, seed + 1, ..., seed + N - 1 (so overriding ``seed`` alone moves them all);
    a list as given (the config check makes sure it starts with ``seed``)."""
    seed, seeds = int(config["seed"]), config.get("seeds")
    if seeds is None:
        return [seed]
    if isinstance(seeds, int):
        return [seed + i for i in range(seeds)]
    return [int(s) for s in seeds]


def replica_name(name: str, seed: int) -> str:
    """``baseline`` trained with seed 43 -> ``baseline-seed43``."""
    return f"{name}-seed{int(seed)}"


def _headline(study: _Study, out: dict[str, Scenario]) -> list[str]:
    """The scenarios every verdict line reads: the unpoisoned federations, the poisoning
    grid's largest γ for its first poisoned center under every aggregation (the poisoned
    pair of the demo), and the membership control."""
    names = [n for n in _unpoisoned_names(study) if n in out]
    poisoned = [s for s in out.values() if s.poison_center is not None and s.control is None
                and s.name == poison_name(s.poison_center, s.gamma, s.aggregation)]
    if poisoned:
        first = poisoned[0].poison_center
        top = max(s.gamma for s in poisoned if s.poison_center == first)
        names += [s.name for s in poisoned if s.poison_center == first and s.gamma == top]
    return names + [n for n, s in out.items() if s.control is not None]


def _replicas(study: _Study, out: dict[str, Scenario]) -> dict[str, Scenario]:
    """``seeds``: every replicated scenario once more per further seed, on the same data; a
    replica's reference is its reference's replica of the same seed where there is one."""
    seeds = training_seeds(study.config)
    wanted = study.config["scenarios"]["replicated"]
    names = _headline(study, out) if wanted is None else list(wanted)
    unknown = [n for n in names if n not in out]
    if unknown and wanted is not None:
        raise ScenarioError(f"config key 'scenarios.replicated': unknown scenario(s) "
                            f"{', '.join(unknown)} (known: {', '.join(out)})")
    replicated = [n for n in names if n in out]
    extra = {}
    for seed in seeds[1:]:
        for name in replicated:
            new = replica_name(name, seed)
            if new in out or new in RESERVED:
                raise ScenarioError(f"config key 'seeds': replica {new!r} of {name!r} is "
                                    "already a scenario's name")
            ref = out[name].reference
            ref = replica_name(ref, seed) if ref in replicated else ref
            extra[new] = replace(out[name], name=new, seed=int(seed), replica_of=name,
                                 reference=ref)
    return extra


def replicas(scenarios: dict[str, Scenario], names: Iterable[str]) -> list[str]:
    """``names`` and, after each, its replicas among ``scenarios`` (the order of the seeds)."""
    out = []
    for name in names:
        out.append(name)
        out += [n for n, s in scenarios.items() if s.replica_of == name]
    return out


def scenarios_from_config(config: dict[str, Any]) -> dict[str, Scenario]:
    """All scenarios of a validated config, in a stable order (unpoisoned, poisoning grid,
    noise grid, custom, the membership control); raises ScenarioError if invalid. One
    generator per key of ``scenarios``."""
    study = _Study.of(config)
    out = _unpoisoned(study)
    out.update(_poisoning_grid(study))
    out.update(_noise_grid(study, out))
    out.update(_custom(study, out))
    _check_all(study, out)
    builtin = [n for n in _unpoisoned_names(study) if n in out]
    out = _with_references(out, builtin)
    out.update(_membership_control(study, out))
    out = _only(config, _watched(study, out))
    out.update(_replicas(study, out))
    return out


def result_settings(train: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """The ``train`` settings that determine ``scenario``'s model: its rule's params, so that
    changing one re-trains exactly the scenarios that read it. How a run runs (threads,
    workers, backend, device) is the config's ``execution`` section, never a param."""
    merged = dict(train)
    for key, value in (scenario.train or {}).items():
        # nested sections merge key by key: setting augment.enabled keeps the study's angles
        merged[key] = ({**train[key], **value} if isinstance(value, dict)
                       and isinstance(train.get(key), dict) else value)
    return merged


def evaluated(scenarios: dict[str, Scenario]) -> list[str]:
    """The scenarios whose synthesis is evaluated: all but controls, which are built to
    memorise a few patients, not to synthesise CT for others."""
    return [n for n, s in scenarios.items() if s.control is None]


def membership_control(scenarios: dict[str, Scenario]) -> str | None:
    return next((n for n, s in scenarios.items() if s.control == "membership"), None)
