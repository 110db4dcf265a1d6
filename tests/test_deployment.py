"""The ``deployment`` backend: the tiny federation through a real SuperLink and SuperNodes.

Two centers (one SuperNode each). The deployed model, history and server log are compared with
the in-process backend's on the same study and seed, and an attack (FedMIA's measurement) runs
on the deployed log. Every deployment must leave no process behind. A deployed round costs 30-60 s
(Flower polls every 3 s and starts a process per message), so the federations here train one
round each; two rounds, three centers and SecAgg+ give identical models too (checked by hand).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fl_study import make_study, tiny_plan
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

from fedaudit.attacks.fedmia.evaluation import measure
from fedaudit.attacks.views import ServerView
from fedaudit.federation import certificates, deployed_app, deployment, processes
from fedaudit.federation.plan import TrainPlan
from fedaudit.federation.run import train_federation
from fedaudit.federation.server_log import load_round, logged_rounds
from fedaudit.federation.strategy import AuditStrategy, FederationError
from fedaudit.models.store import load_model
from fedaudit.models.weights import get_arrays
from fedaudit.torch_files import load_torch

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(),
                                reason="the leftover-process checks read /proc (Linux)")

TIMING = ("train_seconds", "slices_per_s", "round_seconds")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    return make_study(tmp_path_factory.mktemp("study"), centers={"A": 1, "B": 1})


@pytest.fixture(scope="module")
def inprocess(study, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the in-process backend's federation, one round."""
    out = tmp_path_factory.mktemp("inprocess")
    train_federation(tiny_plan(study, out, rounds=1))
    return out


def _deployed(study, out: Path, **kw) -> TrainPlan:
    kw.setdefault("deployment_timeout_s", 300.0)
    return tiny_plan(study, out, backend="deployment", **kw)


def _arrays(path: Path) -> list[np.ndarray]:
    return get_arrays(load_model(path))


def _history(out: Path):
    import pandas as pd
    hist = pd.read_csv(out / "history.tsv", sep="\t")
    return hist.drop(columns=[c for c in TIMING if c in hist])


def _assert_no_process_left(out: Path) -> None:
    folder = (out / deployment.FOLDER).resolve()
    left = processes.marked_processes(folder)
    assert left == [], f"processes of {folder} still running: {left}"


def _handshake(certs: certificates.Certificates, name: str, ca: Path, host: str) -> None:
    """A TLS handshake with Python's ssl module (OpenSSL) between a server presenting
    ``name``'s certificate and a client trusting ``ca`` that dialled ``host``."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*certs.pairs[name])
    client_ctx = ssl.create_default_context(cafile=str(ca))
    a, b = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as err:
            errors.append(err)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=host) as c:
            c.sendall(b"x")
    finally:
        t.join(5)


def test_run_certificates_verify_with_openssl(tmp_path: Path) -> None:
    certs = certificates.make_certificates(tmp_path / "tls", ["superlink", "supernode-A"])
    for host in ("127.0.0.1", "localhost"):
        _handshake(certs, "superlink", certs.ca, host)
        _handshake(certs, "supernode-A", certs.ca, host)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(certs, "superlink", certs.ca, "example.org")  # not a name it was made for
    other = certificates.make_certificates(tmp_path / "other", ["superlink"])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(certs, "superlink", other.ca, "127.0.0.1")  # another run's CA
    assert all(oct(k.stat().st_mode)[-3:] == "600" for k in certs.keys())


def test_keys_are_private_from_creation_and_a_planted_path_is_refused(tmp_path: Path) -> None:
    """No moment at which another account could read a key: the folder is 0700 (narrowed if it
    existed wider), each key is created 0600 by the open itself, and a file or symlink planted
    at a key's path is refused instead of written through."""
    wide = tmp_path / "tls"
    wide.mkdir(mode=0o755)
    wide.chmod(0o755)
    old = os.umask(0)  # the most permissive umask: the modes must come from the code
    try:
        certs = certificates.make_certificates(wide, ["superlink"])
    finally:
        os.umask(old)
    assert oct(wide.stat().st_mode)[-3:] == "700"
    assert oct(certs.pairs["superlink"][1].stat().st_mode)[-3:] == "600"
    for planted in ("file", "symlink"):
        folder = tmp_path / planted
        folder.mkdir()
        target = tmp_path / f"{planted}-readable-by-all"
        target.write_text("")
        path = certificates.key_path(folder, "superlink")
        if planted == "file":
            path.write_text("")
        else:
            path.symlink_to(target)
        with pytest.raises(FileExistsError):
            certificates.make_certificates(folder, ["superlink"])
        assert target.read_text() == ""  # nothing written through the link


def test_the_reaper_deletes_its_files_when_the_job_dies(tmp_path: Path) -> None:
    """The reaper outlives a SIGKILLed job (its own session) and deletes the files then."""
    secret = tmp_path / "secret.key"
    job = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from fedaudit.federation.processes import "
         "start_reaper; start_reaper([sys.argv[1]]); print('ready', flush=True); time.sleep(600)",
         str(secret)], stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == "ready"
        secret.write_text("key")
        time.sleep(0.5)
        assert secret.exists()  # kept while the job lives
    finally:
        job.kill()
        job.wait()
    deadline = time.monotonic() + 30
    while secret.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not secret.exists()


def test_plan_travels_as_json_and_each_node_gets_only_its_centers_data(study, tmp_path) -> None:
    plan = tiny_plan(study, tmp_path)
    again = TrainPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan and again.fingerprint() == plan.fingerprint()
    mine = deployed_app.node_plan(plan, "B")
    assert mine.centers == plan.centers
    assert mine.client("B") == plan.client("B")
    assert mine.client("A").train == () and mine.client("A").val == ()
    with pytest.raises(KeyError):
        deployed_app.node_plan(plan, "Z")


def test_strategy_names_the_center_that_did_not_reply() -> None:
    """What a deployed server sees when a SuperNode stops answering: an error reply that
    names no node; the round's failure names the silent center."""
    strat = AuditStrategy(centers=["A", "B"], names=["w"], initial=[np.zeros(2, np.float32)],
                          aggregation="fedavg", first_round=1, total_rounds=1, log_dir=None)
    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([np.ones(2, np.float32)]), 4,
                 {"center": "A"})
    with pytest.raises(FederationError, match=r"round 1: 1 client\(s\) failed \(no reply from "
                                              r"center B\): Node Unavailable"):
        strat.aggregate_fit(1, [(None, res)], [Exception("Node Unavailable")])


_DRIVER = """
import sys, time
from pathlib import Path
from fedaudit.federation.deployment import LocalFederation
folder = Path(sys.argv[1])
LocalFederation(folder, {"A": folder / "plan_A.json"}, insecure=False, threads=1).start()
print("started", flush=True)
time.sleep(600)
"""


def _flower_programs(folder: Path) -> list[str]:
    """The Flower programs among the deployment's live processes, sorted. A child forked by
    one of them that has not yet run its own program (the SuperExec's ``file -b``, started by
    ``platform``) still shows its parent's command line: it is not counted."""
    names = []
    parent_of = {pid: ppid for ppid, pids in processes._children().items() for pid in pids}
    for pid in processes.marked_processes(folder):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            parent = Path(f"/proc/{parent_of[pid]}/cmdline").read_bytes()
        except (OSError, KeyError):
            continue
        if parent == cmdline:
            continue
        # the interpreter, then the entry point's path: /venv/bin/flower-superlink ...
        progs = [Path(a.decode()) for a in cmdline.split(b"\0")[:2]]
        names += [p.name for p in progs if p.is_absolute() and p.name.startswith("flower-")]
    return sorted(names)


def _log_tails(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}"
                     for p in sorted((folder / "logs").glob("*.log")))


def test_a_killed_job_leaves_no_process_or_key_behind(tmp_path: Path) -> None:
    """SIGKILL (a scheduler's) gives the job no chance to stop anything: the kernel's
    parent-death signal and Flower's parent watch must take the deployment down, and the
    reaper must delete the TLS private keys."""
    folder = (tmp_path / "deployment").resolve()
    folder.mkdir()
    job = subprocess.Popen([sys.executable, "-c", _DRIVER, str(folder)], stdout=subprocess.PIPE,
                           text=True)
    try:
        assert job.stdout.readline().strip() == "started"
        # the SuperLink, the SuperNode and their SuperExecs, by name: a transient child with
        # the marker (`file -b`, run by platform) must not stand in for one. The SuperNode
        # starts its SuperExec only once registered; on a loaded 2-core machine that took
        # over a minute, hence the generous deadline
        want = ["flower-superexec", "flower-superexec", "flower-superlink", "flower-supernode"]
        deadline, seen = time.monotonic() + 240, 0
        # the four on five polls in a row (1 s): a process that comes and goes is not one
        while seen < 5 and time.monotonic() < deadline:
            seen = seen + 1 if _flower_programs(folder) == want else 0
            time.sleep(0.2)
        assert _flower_programs(folder) == want, _log_tails(folder)
        keys = sorted(p.name for p in (folder / "tls").glob("*.key"))
        assert keys == ["superlink.key", "supernode-A.key"]
        assert oct((folder / "tls").stat().st_mode)[-3:] == "700"
    finally:
        job.kill()
        job.wait()
    deadline = time.monotonic() + 60
    while ((processes.marked_processes(folder) or list((folder / "tls").glob("*.key")))
           and time.monotonic() < deadline):
        time.sleep(0.2)
    assert processes.marked_processes(folder) == []
    assert list((folder / "tls").glob("*.key")) == []
    assert (folder / "tls/ca.pem").exists()  # public: only private keys are removed


def test_deployed_federation_is_the_inprocess_one_and_feeds_the_attacks(
        study, inprocess, tmp_path) -> None:
    """TLS: SuperLink, one SuperNode per center, `flwr run`; same model, history and server
    log as in-process, bit for bit, and FedMIA measures the deployed log unchanged."""
    out = tmp_path / "deployed"
    res = train_federation(_deployed(study, out, rounds=1))
    assert res["rounds_trained"] == 1
    for a, b in zip(_arrays(inprocess / "model.pt"), _arrays(out / "model.pt"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _history(out).equals(_history(inprocess))
    assert logged_rounds(out / "server_log") == logged_rounds(inprocess / "server_log") == [1]
    mine, ref = load_round(out / "server_log", 1), load_round(inprocess / "server_log", 1)
    assert sorted(mine.updates) == sorted(ref.updates) == ["A", "B"]
    for k, v in ref.global_arrays.items():
        np.testing.assert_array_equal(mine.global_arrays[k], v)
    for c in ref.updates:
        for k, v in ref.updates[c].items():
            np.testing.assert_array_equal(mine.updates[c][k], v)
    # an attack reads the deployed log as it reads an in-process one
    view = ServerView(out / "server_log", 2)
    assert view.rounds("all") == [1]
    view.global_model(view.round(1))
    patients = [(c.center, c.train[0]) for c in study]
    m_dep, m_ref = (measure(server_log=o / "server_log", rounds="all", patients=patients,
                            model_base=2, per_orientation=2, units=("slice",))
                    for o in (out, inprocess))
    np.testing.assert_array_equal(m_dep["slice/similarity/update"],
                                  m_ref["slice/similarity/update"])
    # the topology and its security: TLS on the SuperLink, keys gone, no process left
    folder = out / deployment.FOLDER
    assert "Uvicorn running on https://127.0.0.1" in (folder / "logs/superlink.log").read_text()
    assert (folder / "tls/ca.pem").exists() and not list((folder / "tls").glob("*.key"))
    for c, other in (("A", "B"), ("B", "A")):
        node_log = (folder / f"logs/supernode_{c}.log").read_text()
        assert f"client {c} round 1" in node_log and f"client {other} round" not in node_log
        node = json.loads((folder / f"plan_{c}.json").read_text())
        assert {d["center"]: len(d["train"]) for d in node["clients"]} == {c: 1, other: 0}
    _assert_no_process_left(out)


def _kill_supernode_when(folder: Path, center: str, ready: Path, killed: list[int]) -> None:
    """SIGKILL ``center``'s SuperNode as soon as ``ready`` exists (the checkpoint of a round)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not ready.exists():
        time.sleep(0.1)
    want = str(folder / f"node_{center}.toml").encode()
    for pid in processes.marked_processes(folder):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"flower-supernode" in a for a in cmd) and want in cmd:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)


def test_insecure_deployment_trains_and_a_killed_supernode_fails_the_round(
        study, inprocess, tmp_path, monkeypatch) -> None:
    """Plain HTTP, and an output folder relative to the job's working directory (as Snakemake
    gives it). Round 1 trains to the in-process global model; then center B's SuperNode is
    killed: the job fails at once naming the center and the round, and every process is
    stopped. (A re-run resumes from round 1's checkpoint, as for the other backends.)"""
    monkeypatch.chdir(tmp_path)
    out = Path("insecure")
    folder = (out / deployment.FOLDER).resolve()
    round1 = out / "checkpoints/round_001.pt"
    killed: list[int] = []
    killer = threading.Thread(target=_kill_supernode_when, daemon=True,
                              args=(folder, "B", round1, killed))
    killer.start()
    t0 = time.monotonic()
    with pytest.raises(FederationError) as err:
        # a timeout far above the bound below: failing "at once" must not be the timeout
        train_federation(_deployed(study, out, deployment_insecure=True,
                                   deployment_timeout_s=1200.0))
    killer.join(5)
    assert len(killed) == 1
    msg = str(err.value)
    assert "training stopped after round 1 of 2" in msg
    assert (f"the SuperNode of center B (pid {killed[0]}) was killed by SIGKILL during round 2 "
            "of 2: every center trains in every round") in msg
    assert str(folder / "logs" / "supernode_B.log") in msg
    # 60-100 s on a loaded 2-core machine, most of it starting the processes
    assert time.monotonic() - t0 < 400
    _assert_no_process_left(out)
    assert "Uvicorn running on http://127.0.0.1" in (folder / "logs/superlink.log").read_text()
    assert not (folder / "tls").exists()
    # round 1 went through the insecure deployment to the in-process model of round 1
    ck = load_torch(round1)  # tensors and plain values only (weights_only)
    assert ck["round"] == 1
    for a, b in zip(_arrays(inprocess / "model.pt"), ck["arrays"], strict=True):
        np.testing.assert_array_equal(a, b.numpy())
