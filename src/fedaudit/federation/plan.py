"""Everything one federated training run needs, as plain data (JSON-able, picklable for Ray)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedaudit.catalog import schema_defaults
from fedaudit.federation.local import LocalConfig
from fedaudit.scenarios import Scenario


@dataclass(frozen=True)
class ClientData:
    """One training center: folders of its preprocessed train and validation patients."""

    center: str
    train: tuple[str, ...]
    val: tuple[str, ...] = ()


_DEFAULTS = schema_defaults()
_TRAIN = _DEFAULTS["train"]
_EXEC = _DEFAULTS["execution"]["train"]  # how a run runs (config section execution.train)


@dataclass(frozen=True)
class TrainPlan:
    """Everything one run needs; the defaults are the config schema's (read from it)."""

    scenario: Scenario
    clients: tuple[ClientData, ...]
    out_dir: str
    seed: int = _DEFAULTS["seed"]
    rounds: int = _TRAIN["rounds"]
    model_base: int = _TRAIN["model"]["base"]
    local: LocalConfig = field(default_factory=LocalConfig)
    device: str = _EXEC["device"]
    amp: bool = _TRAIN["amp"]
    threads: int = _EXEC["threads"]
    backend: str = _EXEC["backend"]
    ray_num_cpus: float = _EXEC["ray"]["num_cpus"]
    ray_num_gpus: float = _EXEC["ray"]["num_gpus"]
    # backend "deployment" (fedaudit.federation.deployment): plain HTTP instead of TLS, and the
    # wall-clock limit of the whole deployed run
    deployment_insecure: bool = _EXEC["deployment"]["insecure"]
    deployment_timeout_s: float = _EXEC["deployment"]["timeout_s"]
    log_rounds: str = _TRAIN["server_log"]["rounds"]  # all | last
    # plugin folders of the study (fedaudit.catalog): the client and server processes load
    # them to find the scenario's aggregation rule, defenses and client attacks
    plugins: tuple[str, ...] = ()
    # the digest of the training code (fedaudit.code_digest; the train rule's param ``code``): a
    # checkpoint written by other code is never resumed
    code: str = ""
    keep_checkpoints: bool = _EXEC["keep_checkpoints"]
    # under a privacy defense: weight FedAvg by the clients' reported counts instead of the
    # enrolment plan (and let them send those counts)
    trust_reported_counts: bool = _TRAIN["trust_reported_counts"]
    # the enrolment plan's FedAvg weights (training patients per center) where the clients'
    # folders no longer tell them: a SuperNode's plan blanks the other centers' (node_plan);
    # empty: from the clients
    enrolment: dict[str, int] = field(default_factory=dict)
    # the clients' bounds on what a server's round config may set
    # (fedaudit.federation.server_settings)
    server_settings: dict[str, Any] = field(
        default_factory=lambda: dict(_TRAIN["server_settings"]))

    @property
    def centers(self) -> list[str]:
        return [c.center for c in self.clients]

    def client(self, center: str) -> ClientData:
        for c in self.clients:
            if c.center == center:
                return c
        raise KeyError(center)

    @property
    def private_replies(self) -> bool:
        """Whether the clients' replies carry nothing but the update and the center's name (a
        privacy defense is on: :func:`fedaudit.scenarios.hides_replies`)."""
        from fedaudit.scenarios import hides_replies

        return hides_replies(self.scenario)

    def fedavg_weight(self, center: str, reported: int) -> int:
        """The weight ``center``'s reply carries and FedAvg uses: its enrolment weight under a
        privacy defense (unless ``trust_reported_counts``), else the slice count it trained."""
        if self.private_replies and not self.trust_reported_counts:
            return self.enrolment_weights()[center]
        return int(reported)

    def enrolment_weights(self) -> dict[str, int]:
        """Each center's FedAvg weight as the enrolment plan fixes it: its number of training
        patients, known to every party before training and never reported per round (a
        reported count is a per-client side channel, and a lie in it would steer the
        aggregate). Under a privacy defense the server weights by these
        (:attr:`private_replies`)."""
        if self.enrolment and set(self.enrolment) == set(self.centers):
            return dict(self.enrolment)
        # a plan whose clients were re-drawn (a malicious server splitting centers into more
        # clients) enrols each client with its own patients
        return {c.center: len(c.train) for c in self.clients}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def model_definition(self) -> dict[str, Any]:
        """The model the federation agrees on: ``UNet2D(model_base)`` with what the scenario's
        defenses require of it (``DefenseSpec.model``: DP-SGD's GroupNorm)."""
        return scenario_model(self.scenario, self.model_base, self.plugins)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainPlan:
        """The plan :meth:`to_json` wrote (JSON turns tuples into lists; they are restored)."""
        d = dict(d)
        d["scenario"] = Scenario.from_dict(d["scenario"])
        d["clients"] = tuple(ClientData(c["center"], tuple(c["train"]), tuple(c["val"]))
                             for c in d["clients"])
        local = dict(d["local"])
        if local.get("slab") is not None:
            local["slab"] = tuple(local["slab"])
        d["local"] = LocalConfig(**local)
        d["plugins"] = tuple(d["plugins"])
        return cls(**d)

    def fingerprint(self) -> str:
        """Identifies the run a checkpoint belongs to: every setting except where outputs go
        and how the run executes, the code that trains (``code``, which covers the plugin
        folders), plus the size and mtime of every input volume (a re-made input must not
        resume an old run)."""
        d = self.to_json()
        for k in ("out_dir", "backend", "ray_num_cpus", "ray_num_gpus", "deployment_insecure",
                  "deployment_timeout_s", "threads", "plugins", "keep_checkpoints"):
            d.pop(k)
        stamps = []
        for c in self.clients:
            for folder in (*c.train, *c.val):
                for f in sorted(Path(folder).glob("*.nii.gz")):
                    st = os.stat(f)
                    stamps.append([str(f), st.st_size, st.st_mtime_ns])
        d["inputs"] = stamps
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def scenario_model(scenario: Scenario, base: int, plugins: tuple[str, ...] = ()
                   ) -> dict[str, Any]:
    """The model definition (:func:`fedaudit.models.definition.agreed`) of a scenario's
    federation: the UNet of width ``base``, changed by each defense whose spec names a
    ``model`` hook; two defenses asking for different changes are an error."""
    from fedaudit.catalog import catalog
    from fedaudit.models.definition import agreed

    return agreed(base, **catalog(plugins).model_changes(scenario.defenses,
                                                         f"scenario {scenario.name!r}"))


def used_training_patients(center: str, train_split: list[str],
                           excluded: set[tuple[str, str]] | frozenset = frozenset(),
                           cap: int | None = None) -> list[str]:
    """The patients a center trains on: its train split less QC-excluded patients, the first
    ``cap`` of them (sorted) when ``train.max_train_patients`` caps it. The FedMIA evaluator
    reads the same function, so its members are exactly what the federation trained on."""
    keep = sorted(p for p in train_split if (center, p) not in excluded)
    return keep if cap is None else keep[:int(cap)]


def plan_from_config(train: dict[str, Any], scenario: Scenario, splits: dict[str, dict],
                     preprocessed_root: str | Path, out_dir: str | Path, *, seed: int,
                     excluded: set[tuple[str, str]] | frozenset = frozenset(),
                     plugins: tuple[str, ...] = (), code: str = "",
                     execution: dict[str, Any] | None = None) -> TrainPlan:
    """A plan from a validated config's ``train`` section (every key present: the schema fills
    the defaults, which are written nowhere else) and its ``execution.train`` section (how the
    run runs; None: the schema's defaults), the training centers' split records
    (``splits``: center -> record, in config order) and the patients QC excluded
    (``(center, patient)`` pairs, dropped from their center's lists). The aggregation rule's
    parameters and the defenses' settings travel in ``scenario``, and so does a replica's own
    training seed (config ``seeds``), which replaces ``seed``: every job that rebuilds the plan
    (an attack re-running a client) then trains with the seed the federation trained with."""
    if scenario.seed is not None:
        seed = scenario.seed
    t = {**train, **(_EXEC if execution is None else execution)}
    root = Path(preprocessed_root)
    clients = []
    for center, sp in splits.items():
        keep = used_training_patients(center, sp["train"], excluded, t["max_train_patients"])
        if not keep:
            raise ValueError(f"center {center} has no training patient left after QC excluded "
                             f"{', '.join(p for p in sp['train'] if (center, p) in excluded)} "
                             f"(see results/preprocessed/qc.tsv; preprocess.qc.flagged: keep "
                             f"keeps flagged patients)")
        clients.append(ClientData(
            center,
            tuple(str(root / center / p) for p in keep),
            tuple(str(root / center / p) for p in sp["val"] if (center, p) not in excluded)))
    local = LocalConfig(
        lr=float(t["lr"]), batch_size=int(t["batch_size"]), local_epochs=int(t["local_epochs"]),
        loss=t["loss"], proximal_mu=float(t["proximal_mu"]),
        max_slices_per_volume=t["max_slices_per_volume"], augment=t["augment"]["enabled"],
        rotate_deg=float(t["augment"]["rotate_deg"]),
        translate_frac=float(t["augment"]["translate_frac"]),
        num_workers=int(t["num_workers"]), val_max_slices=t["val_max_slices"],
        lr_schedule=t["lr_schedule"], optimizer=t["optimizer"], momentum=float(t["momentum"]))
    return TrainPlan(
        scenario=scenario, clients=tuple(clients), out_dir=str(out_dir), seed=int(seed),
        rounds=int(t["rounds"]), model_base=int(t["model"]["base"]), local=local,
        device=t["device"], amp=bool(t["amp"]), threads=int(t["threads"]),
        backend=str(t["backend"]), ray_num_cpus=float(t["ray"]["num_cpus"]),
        ray_num_gpus=float(t["ray"]["num_gpus"]),
        deployment_insecure=bool(t["deployment"]["insecure"]),
        deployment_timeout_s=float(t["deployment"]["timeout_s"]),
        log_rounds=t["server_log"]["rounds"],
        plugins=tuple(plugins), code=str(code),
        keep_checkpoints=bool(t["keep_checkpoints"]),
        trust_reported_counts=bool(t["trust_reported_counts"]),
        server_settings=dict(t["server_settings"]))


def attacked_plan(params: Any, config: dict[str, Any], split_records: list[dict],
                  excluded: set[tuple[str, str]] | frozenset) -> TrainPlan:
    """The attacked scenario's federation as its train rule built it, for an attack job that
    re-runs a client (``params``: the job's ``train``, ``scenario``, ``centers`` and ``seed``;
    ``split_records``: the centers' split files' contents). Execution-only settings come from
    the config, as in the train rule: they change how a federation is computed, not its result."""
    records = {rec["center"]: rec for rec in split_records}
    return plan_from_config(params.train, Scenario.from_dict(params.scenario),
                            {c: records[c] for c in params.centers}, "results/preprocessed",
                            f"results/train/{params.scenario['name']}", seed=params.seed,
                            excluded=excluded, plugins=tuple(config["plugins"]),
                            execution=config["execution"]["train"])
