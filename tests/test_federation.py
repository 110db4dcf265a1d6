"""Flower federation end to end on a tiny study: logs, FedProx, SecAgg+, determinism, resume."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fl_study import make_study, tiny_plan

from fedaudit.defenses.secagg.workflow import max_examples
from fedaudit.federation import grid as grid_mod
from fedaudit.federation import run as run_mod
from fedaudit.federation.client import SCTClient
from fedaudit.federation.local import proximal_term, train_local
from fedaudit.federation.run import train_federation
from fedaudit.federation.server_log import load_round, logged_rounds
from fedaudit.federation.strategy import FederationError
from fedaudit.models.store import load_model
from fedaudit.models.unet import UNet2D
from fedaudit.models.weights import get_arrays, set_arrays
from fedaudit.scenarios import scenario_of

TIMING = ("train_seconds", "slices_per_s", "round_seconds")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    return make_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def baseline(study, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("baseline")
    return out, train_federation(tiny_plan(study, out))


def _model_arrays(path: Path) -> list[np.ndarray]:
    return get_arrays(load_model(path))


def test_proximal_term_matches_hand_computation() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    glob = [p.detach().clone() + 0.1 * torch.randn_like(p) for p in model.parameters()]
    mu = 3.0
    hand = 0.0
    for p, g in zip(model.parameters(), glob, strict=True):
        hand += float(((p.detach() - g) ** 2).sum())
    term = proximal_term(model, glob, mu)
    assert float(term) == pytest.approx(mu / 2 * hand, rel=1e-6)
    term.backward()  # d/dw (mu/2)||w - g||^2 = mu (w - g)
    for p, g in zip(model.parameters(), glob, strict=True):
        torch.testing.assert_close(p.grad, mu * (p.detach() - g))


def test_baseline_writes_model_history_and_server_log(baseline, study) -> None:
    out, res = baseline
    plan = tiny_plan(study, out)
    hist = res["history"]
    assert sorted(hist["round"].unique()) == [1, 2]
    assert sorted(hist["center"].unique()) == ["A", "B", "C"]
    assert np.isfinite(hist["val_mae"]).all() and (hist["val_mae"] > 0).all()
    # FedAvg weight = slices seen: 4 per training volume (the cap) per epoch
    r1rows = hist[hist["round"] == 1]
    n = dict(zip(r1rows["center"], r1rows["num_examples"], strict=True))
    assert n == {"A": 4, "B": 8, "C": 8}
    assert logged_rounds(out / "server_log") == [1, 2]
    r1, r2 = load_round(out / "server_log", 1), load_round(out / "server_log", 2)
    assert r1.update_file == {c: f"update_{c}.npz" for c in "ABC"}
    # the server's new global model is the old one plus the example-weighted mean of updates
    total = sum(r1.num_examples.values())
    for name in r1.names:
        expect = r1.global_arrays[name] + sum(
            r1.num_examples[c] / total * r1.updates[c][name] for c in "ABC")
        np.testing.assert_allclose(r2.global_arrays[name], expect, atol=1e-6)
    # and a logged update is exactly what that client computes: re-run client B's round 2
    model = UNet2D(base=plan.model_base)
    set_arrays(model, [r2.global_arrays[k] for k in r2.names])
    update = SCTClient(plan, "B").fit([r2.global_arrays[k] for k in r2.names], {"round": 2})[0]
    for name, arr in zip(r2.names, update, strict=True):
        np.testing.assert_array_equal(arr, r2.updates["B"][name])


def test_same_seed_same_model_and_history(baseline, study, tmp_path: Path) -> None:
    out, res = baseline
    again = train_federation(tiny_plan(study, tmp_path))
    for a, b in zip(_model_arrays(out / "model.pt"), _model_arrays(tmp_path / "model.pt"),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    cols = [c for c in res["history"].columns if c not in TIMING]
    assert res["history"][cols].equals(again["history"][cols])


def test_fedprox_keeps_local_models_closer_to_the_global_one(study, tmp_path: Path) -> None:
    plan = tiny_plan(study, tmp_path)
    from fedaudit.data.slices import load_volume

    vols = [load_volume(f) for f in plan.client("B").train]
    dist = {}
    for mu in (0.0, 1000.0):
        torch.manual_seed(0)
        model = UNet2D(base=2)
        start = [p.detach().clone() for p in model.parameters()]
        cfg = dataclasses.replace(plan.local, proximal_mu=mu, max_slices_per_volume=8)
        train_local(model, vols, cfg, seed=1, device=torch.device("cpu"))
        dist[mu] = sum(float(((p.detach() - s) ** 2).sum())
                       for p, s in zip(model.parameters(), start, strict=True))
    assert dist[1000.0] < 0.5 * dist[0.0]


class RecordingGrid(grid_mod.InProcessGrid):
    """Keeps every reply message the server code receives."""

    seen: list = []

    def pull_messages(self, message_ids):
        msgs = list(super().pull_messages(message_ids))
        # copies: Flower's workflows empty the records they have converted
        RecordingGrid.seen.extend(copy.deepcopy(m) for m in msgs)
        return msgs


def _arrays_in(msg) -> list[np.ndarray]:
    """Every array a message carries: array records and byte lists (masked vectors)."""
    from flwr.common import bytes_to_ndarray

    found = []
    if not msg.has_content():
        return found
    for rec in msg.content.array_records.values():
        found += [a.numpy() for a in rec.values()]
    for rec in msg.content.config_records.values():
        for v in rec.values():
            if isinstance(v, list) and v and isinstance(v[0], bytes):
                for b in v:
                    try:
                        found.append(bytes_to_ndarray(b))
                    except Exception:  # noqa: BLE001 - keys and ciphertexts are not arrays
                        pass
    return found


def _run_recorded(plan, monkeypatch) -> tuple[list, list[list[np.ndarray]]]:
    RecordingGrid.seen = []
    sent: list[list[np.ndarray]] = []
    orig_fit = SCTClient.fit

    def spy_fit(self, parameters, config):
        res = orig_fit(self, parameters, config)
        sent.append([a.copy() for a in res[0]])
        return res

    monkeypatch.setattr(run_mod, "InProcessGrid", RecordingGrid)
    monkeypatch.setattr(SCTClient, "fit", spy_fit)
    train_federation(plan)
    return RecordingGrid.seen, sent


def _leaks(messages, client_updates) -> int:
    """Arrays seen by the server that match some client's true update (the largest tensor)."""
    hits = 0
    for upd in client_updates:
        target = max(upd, key=lambda a: a.size)
        for msg in messages:
            for arr in _arrays_in(msg):
                if arr.shape == target.shape and np.allclose(arr, target, atol=1e-7):
                    hits += 1
    return hits


@pytest.fixture(scope="module")
def secagg_recorded(study, tmp_path_factory: pytest.TempPathFactory):
    """One SecAgg+ run, every reply the server received recorded: (out, plan, messages,
    the updates the clients computed)."""
    out = tmp_path_factory.mktemp("secagg")
    plan = tiny_plan(study, out, scenario_of("secagg", "fedavg", secagg=True))
    with pytest.MonkeyPatch.context() as mp:
        messages, updates = _run_recorded(plan, mp)
    return out, plan, messages, updates


def test_secagg_aggregate_equals_fedavg_and_server_never_sees_an_update(
        baseline, secagg_recorded, study, tmp_path: Path, monkeypatch) -> None:
    out, _ = baseline
    sa_out, plan, messages, updates = secagg_recorded
    assert len(updates) == 3 * plan.rounds
    assert _leaks(messages, updates) == 0
    # positive control: the same search finds every update in a plain FedAvg run
    plain_msgs, plain_updates = _run_recorded(tiny_plan(study, tmp_path / "plain"), monkeypatch)
    assert _leaks(plain_msgs, plain_updates) >= len(plain_updates)

    sa1, base1 = load_round(sa_out / "server_log", 1), load_round(out / "server_log", 1)
    # the server log holds only the aggregate under SecAgg+: no per-client update exists, only
    # each client's masked vector
    files = {p.name for p in (sa_out / "server_log" / "round_001").iterdir()}
    assert files == {"global.npz", "update_aggregate.npz", "round.json",
                     "masked_A.npz", "masked_B.npz", "masked_C.npz"}
    assert set(sa1.update_file.values()) == {"update_aggregate.npz"}
    # ... and it equals FedAvg of the baseline's (identical) round-1 updates, weighted by the
    # enrolment plan (training patients: SecAgg+ is a privacy defense, no count is reported),
    # within the quantisation step: 2*clip/2^22 per weighted value, rescaled by
    # max_weight / sum(n)
    assert sa1.num_examples == plan.enrolment_weights()
    total = sum(sa1.num_examples.values())
    sa = plan.scenario.defense("secagg")
    step = 2 * sa["clipping_range"] / sa["quantization_range"]
    tol = 3 * step * max_examples(plan, None) / total
    worst = 0.0
    for name in base1.names:
        fedavg = sum(sa1.num_examples[c] / total * base1.updates[c][name] for c in "ABC")
        worst = max(worst, float(np.abs(sa1.updates["A"][name] - fedavg).max()))
    assert worst < tol, (worst, tol)
    assert worst > 0  # it really went through quantisation


# --------------------------------------------------------------------------- side channels

# What a reply may carry under a privacy defense (SecAgg+, client noise): the update, the
# center's name, the enrolment weight, the weight audit's findings on the models the server
# itself sent, Flower's status and SecAgg+'s protocol fields. Nothing else: no loss, validation
# score, throughput or slice count.
ALLOWED_RECORDS = {
    ("array", "fitres.parameters"): None,
    ("config", "fitres.metrics"): {"center", "audit_score", "audit_flags", "audit_reason"},
    ("config", "evaluateres.metrics"): {"center"},
    ("config", "fitres.status"): {"code", "message"},
    ("config", "evaluateres.status"): {"code", "message"},
    ("config", "secaggplus_configs"): {"pk1", "pk2", "ctxts", "dsts", "masked_params", "nids",
                                       "shares"},
    ("metric", "fitres.num_examples"): {"num_examples"},
    ("metric", "evaluateres.num_examples"): {"num_examples"},
    ("metric", "evaluateres.loss"): {"loss"},
}
ALLOWED_HISTORY = {"scenario", "round", "center", "num_examples", "round_seconds",
                   "audit_score", "audit_flags", "audit_reason"}


def _private_scenario(defense: str):
    from fedaudit.scenarios import Scenario, noise_scenario

    monitor = {"name": "weight_audit"}
    if defense == "secagg":
        s = scenario_of("secagg", "fedavg", secagg=True)
        return dataclasses.replace(s, defenses=(*s.defenses, monitor))
    level, settings = {
        "laplace_noise": (0.01, {}),
        "dp_fedavg": (1.0, {"clip": 1.0, "delta": 1e-5}),
        "dp_sgd": (1.0, {"max_grad_norm": 1.0, "delta": 1e-5, "groups": 32}),
    }[defense]
    s = noise_scenario(defense, level, {**settings, "noise_source": "os_entropy"})
    return Scenario(s.name, s.aggregation, s.aggregation_params, (*s.defenses, monitor))


@pytest.mark.parametrize("defense", ["secagg", "laplace_noise", "dp_fedavg", "dp_sgd"])
def test_under_a_privacy_defense_the_server_receives_no_per_client_side_channel(
        study, tmp_path: Path, monkeypatch, defense) -> None:
    """An allowlist over every field of every reply the server received, every round.json
    entry and every history.tsv column; the FedAvg weight is the enrolment plan's. The
    clients' own records still hold what the training curves need."""
    plan = dataclasses.replace(tiny_plan(study, tmp_path, _private_scenario(defense)), rounds=1)
    assert plan.private_replies
    messages, _ = _run_recorded(plan, monkeypatch)
    weights = plan.enrolment_weights()
    kinds = {"array": "array_records", "config": "config_records", "metric": "metric_records"}
    fits = 0
    for msg in messages:
        if not msg.has_content():
            continue
        content = msg.content
        for kind, attr in kinds.items():
            for name, record in getattr(content, attr).items():
                assert (kind, name) in ALLOWED_RECORDS, (defense, kind, name)
                allowed = ALLOWED_RECORDS[(kind, name)]
                if allowed is not None:
                    assert set(record.keys()) <= allowed, (defense, name, set(record.keys()))
        if "fitres.num_examples" in content.metric_records:
            center = str(content.config_records["fitres.metrics"]["center"])
            sent = content.metric_records["fitres.num_examples"]["num_examples"]
            assert sent == weights[center], (defense, center, sent)
            fits += 1
        if "evaluateres.loss" in content.metric_records:
            assert content.metric_records["evaluateres.loss"]["loss"] == 0.0
            assert content.metric_records["evaluateres.num_examples"]["num_examples"] == 0
    assert fits == len(plan.centers)
    logged = json.loads((tmp_path / "server_log" / "round_001" / "round.json").read_text())
    for client in logged["clients"]:
        assert set(client) <= {"center", "num_examples", "metrics", "update_file",
                               "masked_file"}
        assert set(client["metrics"]) <= {"audit_score", "audit_flags", "audit_reason"}
        assert client["num_examples"] == weights[client["center"]]
    hist = (tmp_path / "history.tsv").read_text().splitlines()[0].split("\t")
    assert set(hist) <= ALLOWED_HISTORY, set(hist) - ALLOWED_HISTORY
    # the clients' own records: every center's loss and validation MAE (DP-SGD's loss is
    # withheld even there: an un-noised function of its slices)
    records = (tmp_path / "clients.tsv").read_text().splitlines()[0].split("\t")
    assert {"train_loss", "val_mae", "slices_per_s", "num_examples"} <= set(records)


def test_without_a_privacy_defense_the_clients_report_as_before(baseline) -> None:
    out, result = baseline
    hist = result["history"]
    # the reported slice counts weight FedAvg, and the loss and validation MAE travel
    assert {"train_loss", "val_mae", "slices_per_s"} <= set(hist.columns)
    assert (hist["num_examples"] > 3).all()  # slices, not patients


def _stage2_vectors(messages, plan) -> dict[tuple[int, str], list[np.ndarray]]:
    """(round, center) -> masked integer arrays, decoded from the recorded SecAgg+ replies
    independently of the SecAgg+ defense's capture: the center from the in-process grid's node
    id (1000 + index of the client in the plan), the round from the message's group id."""
    from flwr.common import bytes_to_ndarray
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

    out = {}
    for msg in messages:
        cfg = msg.content.config_records.get(RECORD_KEY_CONFIGS) if msg.has_content() else None
        if cfg is not None and Key.MASKED_PARAMETERS in cfg:
            center = plan.clients[msg.metadata.src_node_id - 1000].center
            out[(int(msg.metadata.group_id), center)] = [
                bytes_to_ndarray(b) for b in cfg[Key.MASKED_PARAMETERS]]
    return out


def test_secagg_log_keeps_each_clients_masked_vector_as_received(secagg_recorded) -> None:
    from fedaudit.federation.server_log import WEIGHTING_FACTOR

    out, plan, messages, _ = secagg_recorded
    received = _stage2_vectors(messages, plan)
    assert len(received) == 3 * plan.rounds
    for rnd in range(1, plan.rounds + 1):
        folder = out / "server_log" / f"round_{rnd:03d}"
        meta = json.loads((folder / "round.json").read_text())
        sa = meta["secagg"]
        assert (sa["clipping_range"], sa["quantization_range"], sa["modulus_range"],
                sa["max_weight"]) == (plan.scenario.defense("secagg")["clipping_range"],
                                      plan.scenario.defense("secagg")["quantization_range"], 2**32,
                                      max_examples(plan, None))
        assert sa["masked_dtype"] == "uint32"
        assert sa["masked_layout"] == [WEIGHTING_FACTOR, *meta["parameter_names"]]
        for client in meta["clients"]:
            assert client["masked_file"] == f"masked_{client['center']}.npz"
            with np.load(folder / client["masked_file"]) as z:
                assert z.files == sa["masked_layout"]
                logged = [z[k] for k in z.files]
            wire = received[(rnd, client["center"])]
            assert all(a.dtype == np.uint32 for a in logged)
            # bit for bit what that client's reply carried, entry by entry
            assert len(logged) == len(wire)
            for a, b in zip(logged, wire, strict=True):
                np.testing.assert_array_equal(a.astype(np.int64), b)


def _flat_centered(arrays: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    v = np.concatenate([np.asarray(arrays[n], np.float64).ravel() for n in names])
    return v - v.mean()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_secagg_masked_view_is_dequantised_and_independent_of_the_updates(
        secagg_recorded, baseline) -> None:
    from flwr.common.secure_aggregation.quantization import dequantize

    out, plan, _, _ = secagg_recorded
    r1 = load_round(out / "server_log", 1)
    base1 = load_round(baseline[0] / "server_log", 1)  # the same round-1 client updates
    assert sorted(r1.masked) == ["A", "B", "C"]
    for c, arrays in r1.masked.items():
        assert list(arrays) == r1.names  # the updates' order, weighting factor dropped
        with np.load(out / "server_log" / "round_001" / f"masked_{c}.npz") as z:
            raw = {n: z[n] for n in r1.names}
        for n in r1.names:
            assert arrays[n].shape == r1.global_arrays[n].shape
            assert arrays[n].dtype == np.float32
            # read as Flower's server reads a vector
            flower = dequantize([raw[n]], plan.scenario.defense("secagg")["clipping_range"],
                                plan.scenario.defense("secagg")["quantization_range"])[0].astype(np.float32)
            np.testing.assert_array_equal(arrays[n], flower)
    flat = {c: _flat_centered(a, r1.names) for c, a in r1.masked.items()}
    assert flat["A"].size > 20_000  # |cos| of independent vectors ~ 1/sqrt(size) << 0.05
    aggregate = _flat_centered(r1.updates["A"], r1.names)
    for c in flat:
        assert abs(_cos(flat[c], aggregate)) < 0.05, c
        assert abs(_cos(flat[c], _flat_centered(base1.updates[c], r1.names))) < 0.05, c
        for d in flat:
            if c < d:
                assert abs(_cos(flat[c], flat[d])) < 0.05, (c, d)
    # positive control: the same measure sees the aggregate in the clients' FedAvg
    total = sum(base1.num_examples.values())
    fedavg = {n: sum(base1.num_examples[c] / total * base1.updates[c][n] for c in "ABC")
              for n in r1.names}
    assert _cos(aggregate, _flat_centered(fedavg, r1.names)) > 0.9


def test_plain_scenarios_log_no_masked_vectors(baseline) -> None:
    out, _ = baseline
    for rnd in logged_rounds(out / "server_log"):
        folder = out / "server_log" / f"round_{rnd:03d}"
        assert not list(folder.glob("masked_*"))
        meta = json.loads((folder / "round.json").read_text())
        assert "secagg" not in meta
        assert all("masked_file" not in c for c in meta["clients"])
        log = load_round(out / "server_log", rnd)
        assert log.masked == {} and log.secagg is None


def test_poisoning_changes_only_the_poisoned_centers_training_data(study, tmp_path) -> None:
    clean = tiny_plan(study, tmp_path)
    poisoned = tiny_plan(study, tmp_path, scenario_of("p", poison_center="B", gamma=1.0))
    for c in "ABC":
        a = SCTClient(clean, c)._train_volumes()
        b = SCTClient(poisoned, c)._train_volumes()
        same = all(np.array_equal(x.mr, y.mr) and np.array_equal(x.ct, y.ct)
                   for x, y in zip(a, b, strict=True))
        assert same == (c != "B"), c


def test_a_failing_client_fails_the_run_with_its_error(study, tmp_path: Path) -> None:
    broken = list(study)
    bad = tmp_path / "C_bad"
    bad.mkdir()
    (bad / "mr.nii.gz").write_bytes(b"not a volume")
    broken[2] = dataclasses.replace(study[2], train=(str(bad),))
    with pytest.raises(FederationError, match="C_bad/mr.nii.gz"):
        train_federation(tiny_plan(tuple(broken), tmp_path / "out"))
    assert not (tmp_path / "out" / "model.pt").exists()


RESUME_SCRIPT = """
import sys, json
sys.path.insert(0, {tests!r})
from fl_study import tiny_plan
from fedaudit.federation.plan import ClientData
from fedaudit.federation.run import train_federation
clients = tuple(ClientData(c["center"], tuple(c["train"]), tuple(c["val"]))
                for c in json.loads({clients!r}))
train_federation(tiny_plan(clients, {out!r}, rounds=4))
"""


def test_killed_run_resumes_and_matches_uninterrupted_run(study, tmp_path: Path) -> None:
    clients = json.dumps([dataclasses.asdict(c) for c in study])
    out = tmp_path / "killed"
    script = RESUME_SCRIPT.format(tests=str(Path(__file__).parent), clients=clients, out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob("round_001.pt")):
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model.pt").exists(), "killed too late to test resuming"
    done = sorted(p.name for p in (out / "checkpoints").glob("round_*.pt"))
    assert done and "round_004.pt" not in done

    # Snakemake deletes a re-run job's declared outputs: the published server log goes, the
    # rounds logged under checkpoints/ before the kill stay
    shutil.rmtree(out / "server_log", ignore_errors=True)
    resumed = train_federation(tiny_plan(study, out, rounds=4))
    assert resumed["resumed_from"] >= 1
    full = train_federation(tiny_plan(study, tmp_path / "full", rounds=4))
    assert full["resumed_from"] == 0
    # the resumed run's server log holds every round, the ones before the kill included, as
    # the uninterrupted run's does
    full_log = tmp_path / "full" / "server_log"
    assert logged_rounds(out / "server_log") == logged_rounds(full_log) == [1, 2, 3, 4]
    first, again = load_round(out / "server_log", 1), load_round(full_log, 1)
    for center, update in first.updates.items():
        for name, arr in update.items():
            np.testing.assert_array_equal(arr, again.updates[center][name])
    for a, b in zip(_model_arrays(out / "model.pt"), _model_arrays(tmp_path / "full" /
                                                                   "model.pt"), strict=True):
        np.testing.assert_array_equal(a, b)
    cols = [c for c in full["history"].columns if c not in TIMING]
    assert resumed["history"][cols].equals(full["history"][cols])


def test_checkpoint_of_another_configuration_is_not_resumed(study, tmp_path: Path) -> None:
    train_federation(tiny_plan(study, tmp_path, rounds=1))
    other = train_federation(tiny_plan(study, tmp_path, rounds=2, seed=8))
    assert other["resumed_from"] == 0


def test_ray_backend_runs_the_same_apps_to_the_same_model(baseline, study, tmp_path) -> None:
    """Flower's simulation engine (Ray) gives the in-process backend's model: clients are
    seeded per (seed, center, round), so scheduling cannot change the numbers."""
    pytest.importorskip("ray")
    out, _ = baseline
    plan = tiny_plan(study, tmp_path, backend="ray", ray_num_cpus=1.0, threads=1)
    train_federation(plan)
    for a, b in zip(_model_arrays(out / "model.pt"), _model_arrays(tmp_path / "model.pt"),
                    strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert logged_rounds(tmp_path / "server_log") == [1, 2]


def test_ray_workers_run_at_normal_priority(monkeypatch) -> None:
    """Ray would start the clients' workers at nice 15, where other busy jobs starve them (290 s
    instead of 16 s for the tiny federation beside two busy cores); FedAudit asks for nice 0
    unless the user set RAY_worker_niceness."""
    pytest.importorskip("ray")
    import types

    import flwr.simulation

    from fedaudit.federation.run import _run_ray

    seen = []
    monkeypatch.setattr(flwr.simulation, "run_simulation",
                        lambda **kw: seen.append(os.environ.get("RAY_worker_niceness")))
    plan = types.SimpleNamespace(ray_num_cpus=1.0, ray_num_gpus=0.0, clients=[1, 2], threads=1)
    # (set, then deleted: the test leaves the variable as it found it)
    monkeypatch.setenv("RAY_worker_niceness", "unset")
    monkeypatch.delenv("RAY_worker_niceness")
    _run_ray(plan, None, None)
    monkeypatch.setenv("RAY_worker_niceness", "5")
    _run_ray(plan, None, None)
    assert seen == ["0", "5"]


class _LateClientManager:
    """Client manager whose nodes appear only after a delay, as under the Ray engine."""

    def __init__(self, n: int, after_s: float) -> None:
        self.n, self.ready_at = n, time.monotonic() + after_s

    def all(self) -> dict:
        ready = time.monotonic() >= self.ready_at
        return {str(i): type("Proxy", (), {"cid": str(i)})() for i in range(self.n if ready else 0)}


def _strategy(**kw):
    from fedaudit.federation.strategy import AuditStrategy
    return AuditStrategy(centers=["A", "B"], names=["w"], initial=[np.zeros(2)],
                         aggregation="fedavg", first_round=1, total_rounds=1, log_dir=None, **kw)


def test_strategy_waits_for_clients_that_register_late() -> None:
    clients = _strategy()._all_clients(_LateClientManager(2, after_s=0.5))
    assert [c.cid for c in clients] == ["0", "1"]


def test_strategy_names_the_missing_clients_after_its_timeout() -> None:
    with pytest.raises(FederationError, match=r"expected 2 clients \(A, B\), 0 connected"):
        _strategy(connect_timeout=0.3)._all_clients(_LateClientManager(2, after_s=60))


def test_sgd_update_follows_the_gradient_while_adams_rescales_it() -> None:
    """One local step from the same model: SGD's update is exactly −lr·g (FedAvg's solver, the
    update gradient-similarity attacks assume); Adam's first step is −lr·g/|g| per coordinate,
    far from g's direction on a UNet whose gradient is concentrated in few coordinates."""
    from fedaudit.federation.local import LocalConfig, make_optimizer

    torch.manual_seed(0)
    base = UNet2D(base=2)
    x, y = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    steps = {}
    for name in ("sgd", "adam"):
        model = copy.deepcopy(base)
        opt = make_optimizer(LocalConfig(optimizer=name), model, lr=0.01)
        torch.nn.functional.l1_loss(model(x), y).backward()
        grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
        opt.step()
        after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        steps[name] = (after - before, grad)
    step, grad = steps["sgd"]
    torch.testing.assert_close(step, -0.01 * grad)
    step, grad = steps["adam"]
    cos = torch.nn.functional.cosine_similarity(-step, grad, dim=0)
    assert 0 < cos < 0.9
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer(LocalConfig(optimizer="rmsprop"), base, lr=0.01)


def test_secagg_model_is_reproducible_while_its_masks_are_fresh(secagg_recorded, study,
                                                                 tmp_path: Path) -> None:
    """The seed fixes the SecAgg+ federation (its masks cancel in the sum, its stochastic
    quantisation is seeded), not the masks: Flower draws each run's key pairs from the OS, so
    the masked vectors the server logs differ from run to run (docs/membership.md)."""
    out, plan, _, _ = secagg_recorded
    again = tiny_plan(study, tmp_path / "again", scenario_of("secagg", "fedavg", secagg=True))
    train_federation(again)
    for a, b in zip(get_arrays(load_model(out / "model.pt")),
                    get_arrays(load_model(tmp_path / "again" / "model.pt")), strict=True):
        np.testing.assert_array_equal(a, b)
    first = load_round(out / "server_log", plan.rounds).masked["A"]
    second = load_round(tmp_path / "again" / "server_log", plan.rounds).masked["A"]
    name = max(first, key=lambda n: first[n].size)
    assert not np.array_equal(first[name], second[name])


def test_enrolment_weights_are_the_plans_unless_its_clients_were_redrawn(study,
                                                                          tmp_path: Path) -> None:
    from fedaudit.attacks.trap_weights.harness import split_clients

    plan = dataclasses.replace(tiny_plan(study, tmp_path), enrolment={"A": 5, "B": 6, "C": 7})
    assert plan.enrolment_weights() == {"A": 5, "B": 6, "C": 7}
    # a SuperNode's plan blanks the other centers' folders: the enrolment stays
    from fedaudit.federation.deployed_app import node_plan

    assert node_plan(plan, "A").enrolment_weights() == {"A": 5, "B": 6, "C": 7}
    # a malicious server's split clients are enrolled with their own patients
    split = dataclasses.replace(plan, clients=split_clients(plan.clients, 5))
    assert set(split.enrolment_weights()) == set(split.centers)
    assert sum(split.enrolment_weights().values()) == sum(len(c.train) for c in plan.clients)
