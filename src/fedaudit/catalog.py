"""The threat catalog: attacks, defenses, aggregation rules and server behaviours as plugins.

Every threat FedAudit audits and every countermeasure it measures is *registered* here by a
small spec, and everything that used to list them by name -- the config schema and its checks,
the Snakemake rules, the tables, the report's categories and the front page's verdict --
iterates over the registries instead. Adding an attack is then one folder (see CONTRIBUTING.md):

- ``plugin.py``: the spec (``ATTACK = AttackSpec(...)``, ``DEFENSE = ...``, ...);
- ``schema.yaml``: its config fragment (JSON schema, with defaults), mounted at
  ``attacks.<name>`` / ``defenses.<name>`` / ``aggregations.<name>``;
- ``rules.smk``: its Snakemake jobs, included by the workflow when the plugin is enabled;
- its code (attacker side: only its view; evaluator side: the ground truth), its table builder,
  its finding for the verdict and its captions.

Built-in plugins live in ``fedaudit/attacks/<name>/``, ``fedaudit/defenses/<name>/`` and
``fedaudit/federation/aggregators/<name>/``; a study adds its own folders with the config's
``plugins`` list (paths). Specs name their functions as ``"module:function"`` references
(``".table:inversion_table"`` is relative to the plugin's own package), resolved only when
called: importing the catalog -- which the config validation does -- loads no torch, Flower or
pandas.

Every attack declares the view its attacker holds (``AttackSpec.view``), one of the registered
:class:`ViewSpec`s: the built-in ones (:mod:`fedaudit.attacks.view_specs`: the honest-but-curious
server's log, a malicious server, one client, the trained model) or a plugin's own (``VIEW =
ViewSpec(...)`` in its ``plugin.py``). The front page lists, per view, what it holds and the
attacks run with it.
"""

from __future__ import annotations

import copy
import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PACKAGE_ROOT = Path(__file__).resolve().parent
SCHEMA_PATH = PACKAGE_ROOT.parents[1] / "workflow" / "schemas" / "config.schema.yaml"
# In an attack's ``default_scenarios``: every scenario of the update-noise grid
# (``scenarios.noise``), so a defense's privacy-utility point is attacked like the baseline.
NOISE_GRID = "@noise"
# Where the built-in plugins live (one sub-folder with a plugin.py each).
BUILTIN_FOLDERS = {
    "attacks": PACKAGE_ROOT / "attacks",
    "defenses": PACKAGE_ROOT / "defenses",
    "aggregators": PACKAGE_ROOT / "federation" / "aggregators",
    "comparisons": PACKAGE_ROOT / "comparisons",
}


class CatalogError(ValueError):
    """A plugin folder that cannot be loaded or a spec that is inconsistent."""


class SettingError(ValueError):
    """Raised by a plugin's config ``check``: ``key`` is relative to the plugin's section
    (``batch_size`` for ``attacks.fedmia.batch_size``)."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key, self.why = key, why


def resolve(ref: str, package: str) -> Callable[..., Any]:
    """``"module:function"`` -> the function; a module starting with ``.`` is relative to the
    plugin's package."""
    module, _, name = ref.partition(":")
    if not name:
        raise CatalogError(f"{ref!r}: expected 'module:function'")
    return getattr(importlib.import_module(module, package), name)


@dataclass(frozen=True)
class TableSpec:
    """A result table of the report (``results/tables/<name>.{csv,md,tex,html}``).

    ``build(inputs, params) -> fedaudit.report.tables.Table`` reads the rule's inputs (a
    Snakemake ``Namedlist``: ``inputs.<key>``) and params; ``gate(data, params)`` may open the
    verdict (the utility gate), ``findings(data, params)`` return the verdict's findings from the
    table's CSV; ``settings(config) -> dict`` is what they read from the config (a param of
    the front page rule, so a change re-runs it); ``thresholds(settings) -> str`` states its
    risk levels on the front page; ``order`` places its findings (smaller first).
    ``description`` says what the table holds and ``paper`` which published table or figure it
    corresponds to (docs/references.md names the papers); both go into the generated outputs
    page (:mod:`fedaudit.report.outputs_page`)."""

    name: str
    category: str
    subcategory: str
    build: str
    description: str = ""
    paper: str = ""
    findings: str | None = None
    gate: str | None = None
    settings: str | None = None
    thresholds: str | None = None
    order: int = 50
    # its findings read every training seed (config ``seeds``); the others read the first seed's
    # federations and the front page says so on their lines
    seeds: bool = False
    # the one statistic its verdict line reads, fixed before any result (said in the table's
    # notes and on the outputs page)
    primary: str = ""
    # ``advice(level) -> str``: what a reader does about one of its findings at that level (the
    # front page's summary table; empty: the level's own advice)
    advice: str | None = None
    package: str = ""

    def call(self, what: str, *args: Any, default: Any = None) -> Any:
        ref = getattr(self, what)
        return default if ref is None else resolve(ref, self.package)(*args)


@dataclass(frozen=True)
class ViewSpec:
    """What one kind of attacker legitimately holds, and nothing more: an attack's run gets only
    its view; the ground truth reaches only its scoring step. ``holds`` says what the attacker
    holds (one phrase, for the front page); ``opens`` is the class that hands it over
    (``"module:Class"``, relative to the plugin's package; :meth:`open`)."""

    name: str
    title: str
    holds: str
    opens: str | None = None
    package: str = ""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        """An instance of the view's class (``opens``) for ``args``."""
        if self.opens is None:
            raise CatalogError(f"view {self.name!r} names no class that opens it")
        return resolve(self.opens, self.package)(*args, **kwargs)


@dataclass(frozen=True)
class AttackSpec:
    """A threat with its own jobs. ``steps`` is the module whose functions the rules call
    (``fedaudit.catalog.run_step``); ``check(config, scenarios)`` raises ``ValueError`` for
    settings the schema cannot express; ``default_scenarios`` are attacked when the config's
    ``attacks.<name>.scenarios`` is null (those that are trained). ``method`` makes the attack
    a gradient-inversion method the suite (:mod:`fedaudit.attacks.gradinv`) runs:
    ``method(settings, task, suite) -> fedaudit.attacks.gradient_inversion.Method`` builds its
    recipe from its config section for a task (``translation`` or ``classification``)."""

    name: str
    title: str
    view: str
    folder: Path
    steps: str = ".steps"
    default_scenarios: tuple[str, ...] = ("baseline",)
    check: str | None = None
    tables: tuple[TableSpec, ...] = ()
    method: str | None = None
    package: str = ""

    @property
    def rules(self) -> Path:
        return self.folder / "rules.smk"

    def step(self, name: str) -> Callable[..., Any]:
        module = importlib.import_module(self.steps, self.package)
        try:
            return getattr(module, name)
        except AttributeError:
            raise CatalogError(f"attack {self.name}: {module.__name__} has no step {name!r}"
                               ) from None


@dataclass(frozen=True)
class ComparisonSpec:
    """A table or figure that sets several attacks' and defenses' results side by side (the
    privacy-utility table of the noise defenses, the coming attack × defense matrices). It
    lives in ``fedaudit/comparisons/<name>/`` (or a plugin folder) with its rules (included
    after every attack's, whose outputs it reads), table builders, findings, figures and
    captions. ``reads`` declares what it reads: per summary it takes as input (the rule's
    input name), the columns it needs; :meth:`check_inputs` refuses a summary without them,
    naming the file and the missing columns, before anything is computed. ``requires`` names
    the attacks whose rules it reads (catalog names): without one of them loaded, its rules are
    not included and its tables not made."""

    name: str
    title: str
    folder: Path
    reads: dict[str, tuple[str, ...]] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    tables: tuple[TableSpec, ...] = ()
    package: str = ""

    @property
    def rules(self) -> Path:
        return self.folder / "rules.smk"

    def check_inputs(self, frames: dict[str, Any], paths: dict[str, str] | None = None
                     ) -> None:
        """Every declared summary in ``frames`` (input name -> DataFrame) has its columns; an
        input not given is not checked (optional inputs: an attack switched off)."""
        for key, columns in self.reads.items():
            frame = frames.get(key)
            if frame is None:
                continue
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                where = (paths or {}).get(key, key)
                raise CatalogError(f"comparison {self.name}: {where} lacks the column(s) "
                                   f"{', '.join(missing)} it reads")


@dataclass(frozen=True)
class ClientAttackSpec:
    """A malicious client's behaviour during training (poisoning today): ``transform(volume,
    params, seed, center) -> volume`` applied to the attacking center's training volumes.
    ``params`` are the entries of a scenario's ``client_attacks`` item besides ``name`` and
    ``center``, validated by ``schema`` (a JSON schema object)."""

    name: str
    title: str
    transform: str
    schema: dict[str, Any] = field(default_factory=dict)
    tables: tuple[TableSpec, ...] = ()
    folder: Path | None = None
    package: str = ""


@dataclass(frozen=True)
class NoiseFamily:
    """A defense that adds privacy noise, as the grid, the attacks and the tables know it. Its
    defense spec carries it (``DefenseSpec.noise``); nothing outside the defense's folder names
    the family. The hooks are ``"module:function"`` references, relative to the folder:

    - ``perturb(arrays, entry, rng) -> arrays``: what the noise does to a client's update (for a
      defense that noises inside local training, its one-step form on one sample's gradient,
      which the gradient-inversion attacks invert); ``entry`` is the scenario's defense entry
      (settings and level), ``rng`` a numpy generator;
    - ``update_std(entry) -> float``: the per-coordinate std it adds to the update a client
      sends (None: the noise is inside local training, not on the update; then it is no
      client mod either, ``on_update`` False);
    - ``budget(entry, rounds, history, slices_per_patient) -> dict``: its ε fields
      (:func:`fedaudit.defenses.budgets.scenario_budget`); None: no guarantee;
      ``needs_history``: the ε is read from the training history (``history.tsv``);
    - ``budget_text(budget) -> str``: the ε cell of a table; ``budget_note(levels, reference)
      -> str``: what a finding adds after its ε list (adjacency, unit);
    - ``reference(settings) -> (name, defenses)``: a scenario without noise the grid adds
      before the family's levels, the one they are compared with (DP-SGD's GroupNorm UNet).

    The grid names a level ``<prefix><level>`` and reads it from the entry's ``level_key``;
    tables write it ``<symbol> = <level>`` under ``label`` (the privacy-utility figure under
    ``figure_label``), families ordered by ``rank``; ``note`` is what the privacy-utility
    table's notes say of the family (``{delta}``: its δ in the table), in the paragraph of the
    update-noise grid for a family that noises the update, in one of its own otherwise;
    ``grid_help`` describes its list of levels in the config (``scenarios.noise.<name>``)."""

    level_key: str
    prefix: str
    symbol: str
    label: str
    perturb: str
    rank: int = 100
    figure_label: str = ""
    where: str = "noise on client updates"
    on_update: bool = True
    update_std: str | None = None
    budget: str | None = None
    budget_text: str | None = None
    budget_note: str | None = None
    needs_history: bool = False
    reference: str | None = None
    no_budget_text: str = "no ε (no clipping)"
    note: str = ""
    grid_help: str = ""


@dataclass(frozen=True)
class DefenseSpec:
    """A countermeasure switched on per scenario (``defenses: [name]``). ``client_mods(plan)``
    returns Flower client mods, ``fit_workflow(plan, params)`` the server's fit workflow (or
    None for the default); ``compatible`` lists the aggregation rules it works with (None: all);
    ``min_clients`` the federation size it needs. Its settings come from the config's
    ``defenses.<name>`` (schema fragment ``schema.yaml``).

    A defense that changes how a client trains rather than what it sends (DP-SGD) names
    ``local_training(settings, seed) -> fedaudit.federation.local.LocalTraining``, built by each
    client per round from the scenario's entry and the round seed and handed to ``train_local``;
    ``model(settings) -> dict`` gives the entries of the model definition it needs
    (:func:`fedaudit.models.definition.agreed`'s ``norm``/``groups``: DP-SGD's GroupNorm UNet),
    which every scenario naming it trains, evaluates and attacks. A defense that adds privacy
    noise declares its family (``noise``, :class:`NoiseFamily`)."""

    name: str
    title: str
    folder: Path
    client_mods: str | None = None
    fit_workflow: str | None = None
    local_training: str | None = None
    model: str | None = None
    compatible: tuple[str, ...] | None = None
    why_incompatible: str = ""
    min_clients: int = 1
    noise: NoiseFamily | None = None
    package: str = ""


@dataclass(frozen=True)
class AggregatorSpec:
    """A server aggregation rule: ``function(updates, num_examples, **params) -> (aggregate,
    metrics)`` over the clients' updates, its parameters' schema (``schema.yaml`` in its folder,
    mounted at ``aggregations.<name>``) and ``check(n_clients, **params)`` raising ``ValueError``
    for a federation it cannot serve (Krum's n > 2f + 2)."""

    name: str
    label: str
    folder: Path
    function: str
    check: str | None = None
    package: str = ""


@dataclass(frozen=True)
class ServerSpec:
    """What the server does besides aggregating: ``honest`` (the default) or a malicious
    behaviour, whose ``wrap(strategy, plan) -> strategy`` changes the Flower strategy (e.g. the
    model it sends); a scenario names it with ``server: <name>``."""

    name: str
    title: str
    wrap: str | None = None
    package: str = ""


HONEST = ServerSpec("honest", "honest-but-curious server")


@dataclass
class Catalog:
    attacks: dict[str, AttackSpec] = field(default_factory=dict)
    client_attacks: dict[str, ClientAttackSpec] = field(default_factory=dict)
    defenses: dict[str, DefenseSpec] = field(default_factory=dict)
    aggregators: dict[str, AggregatorSpec] = field(default_factory=dict)
    servers: dict[str, ServerSpec] = field(default_factory=lambda: {"honest": HONEST})
    tables: dict[str, TableSpec] = field(default_factory=dict)
    comparisons: dict[str, ComparisonSpec] = field(default_factory=dict)
    views: dict[str, ViewSpec] = field(default_factory=dict)

    def add(self, spec: Any, origin: str) -> None:
        kinds = {AttackSpec: self.attacks, ClientAttackSpec: self.client_attacks,
                 DefenseSpec: self.defenses, AggregatorSpec: self.aggregators,
                 ServerSpec: self.servers, TableSpec: self.tables,
                 ComparisonSpec: self.comparisons, ViewSpec: self.views}
        registry = kinds.get(type(spec))
        if registry is None:
            raise CatalogError(f"{origin}: {type(spec).__name__} is not a plugin spec")
        if spec.name in registry and registry[spec.name] != spec:
            raise CatalogError(f"{origin}: a {type(spec).__name__} named {spec.name!r} is "
                               "already registered")
        registry[spec.name] = spec
        for table in getattr(spec, "tables", ()):
            self.add(table, origin)

    def check_views(self, origins: dict[str, str]) -> None:
        """Every attack declares a registered view (checked once everything is loaded, so a
        plugin may declare the view its own attack uses); ``origins``: attack -> its folder."""
        for name, spec in self.attacks.items():
            if spec.view not in self.views:
                raise CatalogError(f"{origins.get(name, name)}: attack {name!r} declares view "
                                   f"{spec.view!r}; known views: {', '.join(self.views)}")

    def attackers(self, attacks: Iterable[str]) -> list[tuple[ViewSpec, list[AttackSpec]]]:
        """The views of ``attacks`` (catalog names), each with its attacks, in the views'
        registration order: who attacks with what."""
        wanted = [self.attacks[a] for a in attacks]
        return [(view, used) for view in self.views.values()
                if (used := [a for a in wanted if a.view == view.name])]

    def attacker_of(self, table: str) -> str:
        """Who attacks in the findings of ``table``: the title of its attack's view, a
        malicious client for a client attack's, empty for a table of no attack (the quality,
        a comparison)."""
        for attack in self.attacks.values():
            if any(t.name == table for t in attack.tables):
                return self.views[attack.view].title
        if any(any(t.name == table for t in c.tables) for c in self.client_attacks.values()):
            return self.views["client"].title
        return ""

    def defense_hook(self, scenario: Any, hook: str
                     ) -> tuple[dict[str, Any], DefenseSpec] | None:
        """The scenario's defense that sets ``hook`` (a :class:`DefenseSpec` field that replaces
        one step: ``fit_workflow``, ``local_training``), with its config entry, or None. Two
        such defenses in one scenario are refused: the step can be replaced once only."""
        found = [(d, spec) for d in scenario.defenses
                 if getattr(spec := self.defenses[d["name"]], hook) is not None]
        if len(found) > 1:
            raise ValueError(f"scenario {scenario.name!r}: defenses "
                             f"{', '.join(d['name'] for d, _ in found)} each replace the same "
                             f"step ({hook}); a scenario can name at most one of them")
        return found[0] if found else None

    def noise_families(self) -> dict[str, NoiseFamily]:
        """The noise defenses by name, in their families' ``rank`` order."""
        found = [(spec.noise.rank, name, spec.noise) for name, spec in self.defenses.items()
                 if spec.noise is not None]
        return {name: family for _, name, family in sorted(found, key=lambda t: t[:2])}

    def model_changes(self, defenses: Iterable[dict[str, Any]], where: str = "scenario"
                      ) -> dict[str, Any]:
        """What ``defenses`` (a scenario's entries) change in the agreed model definition,
        merged over every defense whose spec names a ``model`` hook (``{}``: the paper's
        BatchNorm UNet; ``{"norm": "group", ...}``: the GroupNorm one); two defenses asking
        for different settings are an error."""
        wanted: dict[str, Any] = {}
        for d in defenses:
            spec = self.defenses[d["name"]]
            if spec.model is None:
                continue
            change = resolve(spec.model, spec.package)(d)
            clash = {k for k in change if k in wanted and wanted[k] != change[k]}
            if clash:
                raise ValueError(f"{where}: defenses ask for different model settings "
                                 f"{sorted(clash)}: {wanted} and {change} ({d['name']})")
            wanted.update(change)
        return wanted


_BUILTIN = Catalog()
_BUILTIN_LOADED = False
_FOLDERS: dict[str, list[Any]] = {}  # resolved plugin folder -> the specs it registered
_SPEC_NAMES = ("VIEW", "VIEWS", "ATTACK", "CLIENT_ATTACK", "DEFENSE", "AGGREGATOR", "SERVER",
               "COMPARISON", "TABLES")


def _with_package(spec: Any, package: str) -> Any:
    """``spec`` with its (and its tables') relative refs anchored at ``package`` unless set."""
    if getattr(spec, "package", None) == "":
        spec = replace(spec, package=package)
    tables = getattr(spec, "tables", None)
    if tables:
        spec = replace(spec, tables=tuple(_with_package(t, package) for t in tables))
    return spec


def _specs(module: Any, origin: str) -> list[Any]:
    package = plugin_package(module.__name__)
    out = []
    for attr in _SPEC_NAMES:
        value = getattr(module, attr, None)
        if value is not None:
            out += [_with_package(s, package)
                    for s in (value if isinstance(value, list | tuple) else [value])]
    if not out:
        raise CatalogError(f"{origin} defines none of {', '.join(_SPEC_NAMES)}")
    return out


def _load_builtins() -> None:
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    # quality (the evaluation's table) and the attackers' views every attack chooses from
    modules = ["fedaudit.report.core_tables", "fedaudit.attacks.view_specs"]
    for root in BUILTIN_FOLDERS.values():
        for plugin in sorted(root.glob("*/plugin.py")):
            rel = plugin.parent.relative_to(PACKAGE_ROOT).parts
            modules.append(".".join(("fedaudit", *rel, "plugin")))
    for name in modules:
        for spec in _specs(importlib.import_module(name), name):
            _BUILTIN.add(spec, name)
    _BUILTIN_LOADED = True


def _load_folder(folder: str | Path) -> list[Any]:
    """The specs of the plugin in ``folder`` (a ``plugin.py`` beside its other files); the
    folder is imported as a package ``fedaudit_plugins.<folder name>`` so its specs' relative
    refs (``".steps"``) resolve."""
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _FOLDERS:
        return _FOLDERS[key]
    plugin = folder / "plugin.py"
    if not plugin.is_file():
        raise CatalogError(f"plugin folder {folder}: no plugin.py (see CONTRIBUTING.md)")
    if "fedaudit_plugins" not in sys.modules:
        ns = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(
            "fedaudit_plugins", None, is_package=True))
        ns.__path__ = []
        sys.modules["fedaudit_plugins"] = ns
    pkg_name = f"fedaudit_plugins.{folder.resolve().name}"
    spec = importlib.machinery.ModuleSpec(pkg_name, None, is_package=True)
    package = importlib.util.module_from_spec(spec)
    package.__path__ = [key]
    sys.modules[pkg_name] = package
    try:
        module = importlib.import_module(f"{pkg_name}.plugin")
    except Exception as err:
        del sys.modules[pkg_name]
        raise CatalogError(f"plugin folder {folder}: plugin.py fails to import: {err}") from err
    _FOLDERS[key] = _specs(module, str(plugin))
    return _FOLDERS[key]


_CATALOGS: dict[tuple[str, ...], Catalog] = {}  # plugin folders (resolved) -> their catalog


def catalog(plugins: Iterable[str | Path] = ()) -> Catalog:
    """The registries: the built-in plugins plus those in the ``plugins`` folders. Built once
    per process and set of folders (every later call returns the same object; nobody mutates
    it), and one per set, so one study's plugins never leak into another's."""
    folders = [Path(f) for f in plugins]
    key = tuple(str(f.resolve()) for f in folders)
    if key in _CATALOGS:
        return _CATALOGS[key]
    _load_builtins()
    out = Catalog(**{k: dict(v) for k, v in vars(_BUILTIN).items()})
    origins = {}
    for folder in folders:
        for spec in _load_folder(folder):
            out.add(spec, str(folder))
            origins[spec.name] = str(folder)
    out.check_views(origins)
    _CATALOGS[key] = out
    return out


def _loaded_defenses() -> dict[str, DefenseSpec]:
    """The defenses of the built-ins and of every plugin folder this process has loaded (a
    built-in name wins)."""
    _load_builtins()
    out = dict(_BUILTIN.defenses)
    for found in _FOLDERS.values():
        for spec in found:
            if isinstance(spec, DefenseSpec):
                out.setdefault(spec.name, spec)
    return out


def noise_spec(name: str) -> DefenseSpec | None:
    """The spec of the noise defense ``name`` among the loaded defenses (a scenario names only
    registered defenses, so a name is enough to find its family wherever the scenario's entry
    travels); None when ``name`` adds no noise."""
    spec = _loaded_defenses().get(name)
    return spec if spec is not None and spec.noise is not None else None


def noise_hook(name: str, hook: str) -> Callable[..., Any] | None:
    """The noise defense ``name``'s ``hook`` (a :class:`NoiseFamily` reference field) as a
    function; None when the family does not set it."""
    spec = noise_spec(name)
    if spec is None:
        raise CatalogError(f"{name!r} is not a noise defense")
    ref = getattr(spec.noise, hook)
    return None if ref is None else resolve(ref, spec.package)


def loaded_noise_families() -> dict[str, NoiseFamily]:
    """Every noise family of the built-ins and of the plugin folders loaded in this process,
    in ``rank`` order (what a table orders and labels by)."""
    return Catalog(defenses=_loaded_defenses()).noise_families()


def plugin_package(module_name: str) -> str:
    """The package a ``plugin.py`` belongs to (what its specs' relative refs resolve against)."""
    return module_name.rpartition(".")[0]


@lru_cache(maxsize=64)
def _read_yaml(path: Path) -> Any:
    """A schema file, parsed once per process (config validation, scenario composition and
    the dataclasses' defaults all read the same few files); callers get a deep copy."""
    with open(path) as fh:
        # libyaml's parser where PyYAML has it: the same safe constructor, ~5x faster on the
        # schema files every snakemake invocation reads
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The base config schema (without plugin fragments), a fresh copy."""
    return copy.deepcopy(_read_yaml(path))


def fragment(folder: Path | None) -> dict[str, Any]:
    """A plugin's config schema fragment (``schema.yaml``; an empty object when it has none)."""
    path = folder / "schema.yaml" if folder is not None else None
    if path is None or not path.is_file():
        return {"type": "object", "additionalProperties": False, "default": {}, "properties": {}}
    out = copy.deepcopy(_read_yaml(path))
    out.setdefault("default", {})
    return out


def defaults_of(schema: dict[str, Any]) -> dict[str, Any]:
    """What a schema object gives when the config sets nothing: each property's ``default``,
    nested sections filled the same way (the one place defaults are written)."""
    out: dict[str, Any] = {}
    for key, sub in schema.get("properties", {}).items():
        if "properties" in sub:
            out[key] = {**defaults_of(sub), **copy.deepcopy(sub.get("default", {}))}
        elif "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
    return out


def fragment_defaults(folder: Path | None) -> dict[str, Any]:
    """The settings a plugin's schema fragment gives when the config sets none."""
    return defaults_of(fragment(folder))


def schema_defaults(section: str | None = None) -> dict[str, Any]:
    """The defaults of the config schema (of one section, e.g. ``train``): what the dataclasses
    built from a config fall back to, read from the schema rather than written again."""
    schema = _read_yaml(SCHEMA_PATH)  # defaults_of copies what it returns
    return defaults_of(schema if section is None else schema["properties"][section])


def assemble_schema(base: dict[str, Any], cat: Catalog) -> dict[str, Any]:
    """The config schema with every registered plugin's fragment mounted and the name lists
    (aggregation rules, defenses, client attacks, server behaviours) filled in."""
    schema = copy.deepcopy(base)
    props = schema["properties"]
    for name, spec in cat.attacks.items():
        props["attacks"]["properties"][name] = fragment(spec.folder)
    for name, spec in cat.defenses.items():
        props["defenses"]["properties"][name] = fragment(spec.folder)
    for name, spec in cat.aggregators.items():
        props["aggregations"]["properties"][name] = fragment(spec.folder)
    grid = props["scenarios"]["properties"]["noise"]["properties"]
    for name, family in cat.noise_families().items():
        sym = family.symbol
        grid[name] = {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                      "uniqueItems": True, "default": [],
                      "description": family.grid_help or f"{family.label} levels {sym}, one "
                      f"scenario each, named {family.prefix}<{sym}>."}
    defs = schema["$defs"]
    aggregators = list(cat.aggregators)
    defs["aggregation_name"] = {**defs.get("aggregation_name", {}), "enum": aggregators}
    defs["defense_name"] = {**defs.get("defense_name", {}), "enum": list(cat.defenses)}
    defs["server_name"] = {**defs.get("server_name", {}), "enum": list(cat.servers)}
    # The built-in grid's names: baseline (FedAvg), secagg (FedAvg + SecAgg+) and every other
    # aggregation rule by its own name.
    defs["unpoisoned_name"] = {**defs.get("unpoisoned_name", {}),
                               "enum": ["baseline", "secagg",
                                        *[a for a in aggregators if a != "fedavg"]]}
    defs["client_attack"] = {"oneOf": [_client_attack_schema(spec)
                                       for spec in cat.client_attacks.values()]}
    return schema


def _client_attack_schema(spec: ClientAttackSpec) -> dict[str, Any]:
    body = copy.deepcopy(spec.schema)
    props = {"name": {"const": spec.name}, "center": {"type": "string"},
             **body.get("properties", {})}
    return {"type": "object", "additionalProperties": False,
            "required": ["name", "center", *body.get("required", [])], "properties": props}


def check_logged_rounds(config: dict[str, Any], key: str, wanted: Any) -> None:
    """For an attack's ``check``: the rounds it reads (``key`` of its section) must exist and be
    in the server log."""
    if wanted in ("last", "all"):
        return
    rounds = config["train"]["rounds"]
    wanted = [wanted] if isinstance(wanted, int) else wanted
    late = [r for r in wanted if r > rounds]
    if late:
        raise SettingError(key, f"round(s) {late} exceed train.rounds = {rounds}")
    if config["train"]["server_log"]["rounds"] == "last" and wanted != [rounds]:
        raise SettingError(key, f"{wanted} but train.server_log.rounds is 'last', so only "
                           f"round {rounds} is logged")


# --------------------------------------------------------------------------- rules' entry point


@dataclass(frozen=True)
class Job:
    """What a plugin step reads of its job (CONTRIBUTING.md, "steps.py"): the rule's name,
    ``params``, ``input``, ``output`` and ``wildcards`` (attribute access, as in the rule),
    its ``threads`` and the validated ``config``. :func:`run_step` builds it from the Snakemake
    object; a test builds one directly, without Snakemake."""

    rule: str
    params: Any
    input: Any
    output: Any
    wildcards: Any = None
    threads: int = 1
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, smk: Any) -> Job:
        return cls(rule=smk.rule, params=smk.params, input=smk.input, output=smk.output,
                   wildcards=smk.wildcards, threads=int(smk.threads), config=smk.config)

    def device(self, stage: str = "attacks") -> str:
        """The device the ``stage``'s jobs run on (config ``execution.<stage>.device``): how
        the job runs, never a param, so changing it re-runs nothing."""
        return self.config["execution"][stage]["device"]


def run_step(smk: Any, log: Any) -> None:
    """What every plugin rule's script does: find the attack (``params.attack``), load the
    study's plugin folders, and call its step ``params.step`` with the rule's :class:`Job`."""
    job = Job.of(smk)
    cat = catalog(job.config["plugins"])
    name = job.params.attack
    if name not in cat.attacks:
        raise CatalogError(f"rule {job.rule}: attack {name!r} is not registered")
    cat.attacks[name].step(job.params.step)(job, log)


def ordered_tables(cat: Catalog, names: Sequence[str]) -> list[TableSpec]:
    return sorted((cat.tables[n] for n in names), key=lambda t: (t.order, t.name))
