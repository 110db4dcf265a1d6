"""The ``deployment`` backend: the federation as a real Flower deployment on this machine.

Where ``inprocess`` and ``ray`` run the ServerApp and ClientApps inside the training job, this
backend runs Flower's own deployment processes (Flower 1.41), the topology of a multi-hospital
federation with every party on localhost:

- one ``flower-superlink`` (its Fleet, Control and Runtime APIs share one HTTP(S) port), which
  starts the ServerApp of a run in a ``flwr-serverapp`` subprocess through Flower's SuperExec;
- one ``flower-supernode`` per training center, whose node config (a TOML file) names its
  ``center`` and a plan file holding *that center's* data folders only (the others' are blanked,
  so a client cannot read another hospital's patients); it runs a ``flwr-clientapp``
  subprocess per message and keeps the node's ``Context`` between messages (SecAgg+'s client
  mod stores its protocol state there);
- the run is submitted as a user would: ``flwr run <app> <connection> --stream`` with a Flower
  App folder written for the run (``pyproject.toml`` with ``[tool.flwr.app.components]`` and a
  module that takes :data:`server_app` and :data:`client_app` from here), which the CLI packs
  into a FAB; the ServerApp's output streams into ``logs/run.log``.

TLS (default): a certificate authority and one server certificate per process that serves
(the SuperLink; each SuperNode's Runtime API, which its ClientApps call) are made for the run
(:func:`make_certificates`); SuperNodes, SuperExecs and the CLI verify them against the CA.
``train.deployment.insecure: true`` runs everything over plain HTTP instead. Private keys are
deleted when the run ends.

The same ServerApp and ClientApp code runs as in-process (:func:`fedaudit.federation.apps.
server_main`, :func:`~fedaudit.federation.apps.make_client_app`): the strategy, built in the
ServerApp's process from the same checkpoint, writes the server log and a checkpoint after every
round into the scenario's folder exactly as in-process, so every attack reads a deployed
federation's log unchanged, and the job takes its model and history from the final checkpoint.

Determinism: clients seed numpy, torch and Python from (seed, center, round) at the start of
every round and the server sorts replies by center, so neither the transport nor the order in
which SuperNodes answer enters the numbers; arrays cross the wire as float32 bytes, losslessly.
Validation runs in the channels_last memory format whatever the process ran before
(:func:`fedaudit.federation.local.validate`): a fresh ClientApp process and an in-process client
that has just trained would otherwise pick different convolution kernels (validation MAE off by
~1e-9 relative). The model, history and server log equal the in-process backend's bit for bit
(tested on the tiny federation; SecAgg+ too, checked by hand: its four stages are four message
exchanges per round). One difference in principle: a ClientApp process lives for one message, so the
unexchanged ``num_batches_tracked`` counters of BatchNorm restart from zero each round where the
in-process client's cached model keeps counting; with BatchNorm's fixed momentum they do not
enter any computation (:mod:`fedaudit.models.weights`).

Failures: every process is a child of the job (its own session; its log under
``<scenario>/deployment/logs``) and all of them -- with the SuperExecs and app processes they
started, found by their process tree and by a marker in their environment -- are stopped on
success, failure and timeout. A SuperNode or SuperLink that exits while the run is in progress
fails the job at once, naming the center, the round in progress and the process's log: every
center trains in every round (full participation, paper 000), so the round cannot complete
without it. (A SuperNode the job cannot watch, on another machine, is declared unavailable by
the SuperLink after two missed 30 s heartbeats; the strategy then fails the round naming the
center that did not reply.) ``train.deployment.timeout_s`` bounds the whole run.

Cost: Flower's SuperNodes and ServerApp poll every 3 s and every message starts a ClientApp
process (imports included), so a round of the tiny federation takes 30-60 s (on 2 busy cores)
where in-process takes ~1 s: the overhead is per message, not per slice.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

import fedaudit
from fedaudit.federation import checkpoint
from fedaudit.federation.apps import (
    checkpoint_dir,
    initial_model,
    make_client_app,
    make_strategy,
    resume_point,
    server_main,
)
from fedaudit.federation.plan import ClientData, TrainPlan
from fedaudit.federation.strategy import FederationError
from fedaudit.models.weights import exchanged_names

log = logging.getLogger(__name__)

FOLDER = "deployment"  # under the scenario's out_dir
APP_MODULE = "fedaudit_app"
CONNECTION = "fedaudit"  # the SuperLink connection's name in the CLI's Flower config
# Every process of one deployment inherits this variable (value: its folder), so the teardown
# finds the app processes Flower's SuperExecs started even when their parents are gone.
MARKER = "FEDAUDIT_DEPLOYMENT"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0  # a SuperLink that does not listen by then has failed
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL
POLL_S = 0.5

APP_SOURCE = '''"""One FedAudit run's Flower App (written by fedaudit.federation.deployment)."""

from fedaudit.federation import deployment

# assignments, not an import: `flwr run` finds the components by reading this file
server_app = deployment.server_app
client_app = deployment.client_app
'''


def _toml_value(v: str | int | float | bool) -> str:
    # a JSON string (ASCII, escaped) is a valid TOML basic string
    return json.dumps(v) if not isinstance(v, bool) else str(v).lower()


def _toml_table(d: dict[str, str | int | float | bool]) -> str:
    return "".join(f"{k} = {_toml_value(v)}\n" for k, v in d.items())


# -- TLS ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Certificates:
    """PEM files made for one run: the CA's certificate and, per name, (certificate, key)."""

    ca: Path
    pairs: dict[str, tuple[Path, Path]]

    def keys(self) -> list[Path]:
        return [k for _, k in self.pairs.values()]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FedAudit deployment"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_certificates(folder: str | Path, names: Sequence[str],
                      hosts: Sequence[str] = (HOST, "localhost"),
                      days: float = 7.0) -> Certificates:
    """A certificate authority and one server certificate per name, for ``hosts``.

    X.509 v3 as profiled by RFC 5280: the CA's certificate is self-signed with
    ``basicConstraints`` CA:TRUE, path length 0 (§4.2.1.9) and ``keyUsage`` keyCertSign/cRLSign
    (§4.2.1.3); each server certificate names every host as a ``subjectAltName`` -- IP address
    entries for literal addresses, DNS names otherwise (§4.2.1.6), which is what TLS clients
    match the address they dialled against (RFC 6125 §6) -- with ``extendedKeyUsage``
    serverAuth (§4.2.1.12) and the authority/subject key identifiers (§4.2.1.1-2). Keys are
    ECDSA P-256 (RFC 5480), signatures ECDSA with SHA-256. Valid from an hour ago (clock skew)
    for ``days``; private keys are written mode 0600.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("FedAudit run CA")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    san: list[x509.GeneralName] = []
    for h in hosts:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            san.append(x509.DNSName(h))
    pairs = {}
    for n in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(_name(n)).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
        cert_path, key_path = folder / f"{n}.pem", folder / f"{n}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        pairs[n] = (cert_path, key_path)
    return Certificates(ca_path, pairs)


# -- plans and the app ---------------------------------------------------------------------

def load_plan(path: str | Path) -> TrainPlan:
    try:
        return TrainPlan.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a readable TrainPlan written for this deployment "
                         f"({type(err).__name__}: {err})") from err


def node_plan(plan: TrainPlan, center: str) -> TrainPlan:
    """What ``center``'s SuperNode is given: the plan with every other center's data folders
    blanked (the centers' names stay: the protocol and the client mods count them)."""
    plan.client(center)  # raises KeyError for a center the plan does not train
    # the enrolment weights stay: they are public, and FedAvg and the audit's noise use them
    return replace(plan, enrolment=plan.enrolment_weights(),
                   clients=tuple(c if c.center == center else ClientData(c.center, ())
                                 for c in plan.clients))


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def write_app(folder: Path, run_config: dict[str, str | int]) -> Path:
    """The Flower App folder ``flwr run`` packs: its run config carries ``run_config``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(
        "[project]\n"
        'name = "fedaudit-deployment"\n'
        'version = "1.0.0"\n'
        'description = "One FedAudit federation run on a Flower deployment"\n'
        'license = "MIT"\n\n'
        "[tool.flwr.app]\n"
        'publisher = "fedaudit"\n\n'
        "[tool.flwr.app.components]\n"
        f'serverapp = "{APP_MODULE}:server_app"\n'
        f'clientapp = "{APP_MODULE}:client_app"\n\n'
        "[tool.flwr.app.config]\n" + _toml_table(run_config))
    (folder / f"{APP_MODULE}.py").write_text(APP_SOURCE)
    return folder


def _log_to(path: Path | None) -> None:
    """INFO logs of fedaudit in an app process (Flower configures only its own logger): to
    stderr, which Flower captures, and to ``path`` when given."""
    logger = logging.getLogger("fedaudit")
    logger.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path is not None:
        handlers.append(logging.FileHandler(path))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)


# -- the apps the deployment runs ----------------------------------------------------------

def serve(plan: TrainPlan, grid: Grid, context: Context, result: Path, first_round: int) -> None:
    """The deployed ServerApp's body: the strategy from the run's checkpoint, the same server
    workflow as in-process, and ``result`` (JSON: first and last completed round, error) for
    the job, written whatever happens."""
    _log_to(result.parent / "logs" / "serverapp.log")
    model = initial_model(plan)
    start, arrays, history = resume_point(plan, model)
    record: dict[str, Any] = {"first_round": start, "completed_round": start - 1, "error": None}
    try:
        if start != first_round:
            raise FederationError(
                f"the job resolved round {first_round} as the first to train, the ServerApp "
                f"found round {start} in {checkpoint_dir(plan)}: the checkpoints changed under "
                "the run")
        strategy = make_strategy(plan, exchanged_names(model), start, arrays, history)
        try:
            server_main(plan, strategy, plan.rounds - start + 1)(grid, context)
        finally:
            record["completed_round"] = strategy.completed_round
            record["error"] = strategy.error
        if strategy.completed_round != plan.rounds and record["error"] is None:
            record["error"] = (f"the server workflow ended after round "
                               f"{strategy.completed_round} of {plan.rounds}")
    except BaseException as err:
        record["error"] = record["error"] or "".join(traceback.format_exception(err))
        raise
    finally:
        _write_json(result, record)
    if record["error"]:
        raise FederationError(record["error"])


server_app = ServerApp()


@server_app.main()
def _deployed_server(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    serve(load_plan(str(cfg["plan"])), grid, context, Path(str(cfg["result"])),
          int(cfg["first-round"]))


class NodeClientApp(ClientApp):
    """The ClientApp every SuperNode runs: its node config's ``plan`` (the center's own plan,
    :func:`node_plan`) and ``center`` make it :func:`fedaudit.federation.apps.make_client_app`'s
    client of that center, with the scenario's client mods."""

    def __call__(self, message: Message, context: Context) -> Message:
        if not logging.getLogger("fedaudit").handlers:
            _log_to(None)
        plan = load_plan(str(context.node_config["plan"]))
        return make_client_app(plan)(message, context)


client_app = NodeClientApp()


# -- processes -------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port free on localhost now (the OS picks it; a process binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# Linux's prctl(PR_SET_PDEATHSIG): the kernel signals a child when the job that started it dies,
# even by SIGKILL (a scheduler's), so no SuperLink or SuperNode outlives its job.
_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
    _prctl = None


def _die_with(parent: int) -> Callable[[], None]:
    """``preexec_fn`` of a child: SIGTERM when the job dies (Linux); exits at once if the job
    is already gone."""
    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)
    return setup


def _flower_bin(name: str) -> str:
    """A Flower console script of this interpreter's environment (the one the job runs in)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"train.backend 'deployment' needs Flower's `{name}` command "
                                f"(pip install flwr); not in {local.parent} nor on PATH")
    return found


def _children() -> dict[int, list[int]]:
    """ppid -> pids of every process (Linux /proc; elsewhere `ps`)."""
    out: dict[int, list[int]] = {}
    proc = Path("/proc")
    if proc.is_dir():
        for d in proc.iterdir():
            if d.name.isdigit():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                out.setdefault(ppid, []).append(int(d.name))
        return out
    res = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True)
    for line in res.stdout.splitlines():
        pid, ppid = map(int, line.split())
        out.setdefault(ppid, []).append(pid)
    return out


def marked_processes(folder: str | Path) -> list[int]:
    """Running processes whose environment carries this deployment's marker (Linux only:
    elsewhere the process tree has to do)."""
    want = f"{MARKER}={Path(folder)}".encode()
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for d in proc.iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                env = (d / "environ").read_bytes()
            except OSError:
                continue
            if want in env.split(b"\0") and is_running(int(d.name)):
                found.append(int(d.name))
    return found


def is_running(pid: int) -> bool:
    """True for a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tree(roots: Iterable[int]) -> list[int]:
    children = _children()
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.append(pid)
            todo.extend(children.get(pid, ()))
    return out


@dataclass
class Process:
    """One process the job started: what it is (``center`` None for the SuperLink, the CLI),
    its handle and its log file."""

    what: str
    popen: subprocess.Popen
    log_path: Path
    center: str | None = None
    expected_exit: bool = False  # the CLI's `flwr run` ends by itself; daemons must not

    def describe(self) -> str:
        return f"{self.what} (pid {self.popen.pid})"

    def exit_text(self) -> str:
        rc = self.popen.returncode
        if rc is not None and rc < 0:
            return f"was killed by {signal.Signals(-rc).name}"
        return f"exited with code {rc}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        tail = [re.sub(r"\x1b\[[0-9;]*m", "", t) for t in text[-lines:]]
        return "\n".join("    " + t for t in tail)


class LocalFederation:
    """One SuperLink and one SuperNode per center on localhost, each in its own session, with
    its Flower home, its port and its log under ``folder``. A context manager: leaving it stops
    every process of the deployment (:meth:`stop`)."""

    def __init__(self, folder: Path, node_plans: dict[str, Path], *, insecure: bool,
                 threads: int) -> None:
        self.folder = folder
        self.node_plans = node_plans
        self.insecure = insecure
        self.threads = max(1, int(threads))
        self.logs = folder / "logs"
        self.home = folder / "home"
        self.processes: list[Process] = []
        self.certs: Certificates | None = None
        self.port = 0
        self.survivors: list[int] = []

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # environment shared by every process: this interpreter's bin first (SuperExec starts
    # flwr-serverapp / flwr-clientapp by name), fedaudit importable (under --use-conda it is
    # on sys.path, not installed), no telemetry or update check, the marker
    def env(self, home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        src = str(Path(fedaudit.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        home.mkdir(parents=True, exist_ok=True)
        env.update({"FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
                    "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1",
                    MARKER: str(self.folder)})
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(self.threads)
        return env

    def _spawn(self, what: str, cmd: list[str], home: Path, log_name: str,
               center: str | None = None, expected_exit: bool = False) -> Process:
        self.logs.mkdir(parents=True, exist_ok=True)
        path = self.logs / log_name
        with open(path, "ab") as fh:
            fh.write(f"$ {' '.join(cmd)}\n".encode())
            fh.flush()
            # the job's working directory: the plan's paths (data, out_dir, plugins) are
            # relative to it
            p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env(home),
                                 start_new_session=True, preexec_fn=_die_with(os.getpid()))
        proc = Process(what, p, path, center, expected_exit)
        self.processes.append(proc)
        log.info("started %s, log %s", proc.describe(), path)
        return proc

    def start(self) -> None:
        """Certificates (unless insecure), the SuperLink (waits until it listens), then the
        SuperNodes; their registration is awaited by the strategy (each round waits for every
        center's node)."""
        centers = list(self.node_plans)
        if not self.insecure:
            self.certs = make_certificates(self.folder / "tls",
                                           ["superlink", *(f"supernode-{c}" for c in centers)])
        self.port = free_port()
        cmd = [_flower_bin("flower-superlink"), "--host", HOST, "--port", str(self.port),
               "--disable-runtime-dependency-installation"]
        cmd += self._server_tls("superlink")
        link = self._spawn("the SuperLink", cmd, self.home / "superlink", "superlink.log")
        self._wait_listening(link)
        for c in centers:
            node_cfg = self.folder / f"node_{c}.toml"
            node_cfg.write_text(_toml_table({"center": c, "plan": str(self.node_plans[c]),
                                             "partition-id": sorted(centers).index(c),
                                             "num-partitions": len(centers)}))
            cmd = [_flower_bin("flower-supernode"), "--superlink", f"{HOST}:{self.port}",
                   "--host", HOST, "--port", str(free_port()), "--node-config", str(node_cfg)]
            if self.certs is None:
                cmd += ["--insecure"]
            else:
                cmd += ["--root-certificates", str(self.certs.ca)]
                cmd += self._server_tls(f"supernode-{c}")
            self._spawn(f"the SuperNode of center {c}", cmd, self.home / f"supernode_{c}",
                        f"supernode_{c}.log", center=c)
        cli = self.home / "cli"
        cli.mkdir(parents=True, exist_ok=True)
        conn: dict[str, str | bool] = {"address": f"{HOST}:{self.port}"}
        if self.certs is None:
            conn["insecure"] = True
        else:
            conn["root-certificates"] = str(self.certs.ca)
        (cli / "config.toml").write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n'
                                         f"[superlink.{CONNECTION}]\n" + _toml_table(conn))

    def _server_tls(self, name: str) -> list[str]:
        if self.certs is None:
            return ["--insecure"] if name == "superlink" else []
        cert, key = self.certs.pairs[name]
        return ["--ssl-ca-certfile", str(self.certs.ca), "--ssl-certfile", str(cert),
                "--ssl-keyfile", str(key)]

    def _wait_listening(self, proc: Process) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise FederationError(f"{proc.describe()} {proc.exit_text()} at start; its log "
                                      f"{proc.log_path}:\n{proc.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.2)
        raise FederationError(f"{proc.describe()} did not listen on {HOST}:{self.port} within "
                              f"{READY_TIMEOUT_S:.0f} s; its log {proc.log_path}:\n"
                              f"{proc.log_tail()}")

    def submit(self, app: Path) -> Process:
        """``flwr run <app> <connection> --stream``: submits the run and streams the
        ServerApp's log until the run finishes."""
        cmd = [_flower_bin("flwr"), "run", str(app), CONNECTION, "--stream"]
        return self._spawn("`flwr run`", cmd, self.home / "cli", "run.log", expected_exit=True)

    def run_id(self) -> int | None:
        runner = next((p for p in self.processes if p.expected_exit), None)
        if runner is None:
            return None
        m = re.search(r"Successfully started run (\d+)", runner.log_path.read_text("utf-8",
                                                                                   "replace"))
        return int(m.group(1)) if m else None

    def status(self) -> str:
        """The run's status as the SuperLink reports it (``flwr ls``), for failure messages."""
        rid = self.run_id()
        if rid is None:
            return "no run was started (see run.log)"
        try:
            res = subprocess.run([_flower_bin("flwr"), "ls", CONNECTION, "--run-id", str(rid),
                                  "--format", "json"], capture_output=True, text=True,
                                 env=self.env(self.home / "cli"), timeout=60)
            run = json.loads(res.stdout)["runs"][0]
            return f"run {rid}: {run['status']} ({run['status-details']})"
        except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError) as err:
            return f"run {rid}: status unavailable ({type(err).__name__}: {err})"

    def exited(self) -> list[Process]:
        """Daemons that have exited (none should while the federation runs)."""
        return [p for p in self.processes if not p.expected_exit and p.popen.poll() is not None]

    def pids(self) -> list[int]:
        """Every live process of the deployment: the ones started here that are still running
        (a reaped one's pid may belong to another process by now), their descendants and any
        other carrying the marker (an app process whose parent is gone)."""
        pids = _tree(p.popen.pid for p in self.processes if p.popen.poll() is None)
        pids += [p for p in marked_processes(self.folder) if p not in pids]
        return [p for p in pids if is_running(p)]

    def stop(self) -> None:
        """SIGTERM to every process of the deployment, SIGKILL to any still running after
        :data:`STOP_GRACE_S`; private keys are deleted. ``survivors``: pids still running
        afterwards (none expected)."""
        t0 = time.monotonic()
        n = 0
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
            pids = self.pids()  # afresh: a process may have started or ended meanwhile
            if not pids:
                break
            n = max(n, len(pids))
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.pids():
                time.sleep(0.1)
        for p in self.processes:
            try:
                p.popen.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        self.survivors = self.pids()
        log.info("stopped %d deployment process(es) in %.1f s", n, time.monotonic() - t0)
        if self.survivors:
            log.warning("deployment processes still running after SIGKILL: %s", self.survivors)
        if self.certs is not None:
            for key in self.certs.keys():
                key.unlink(missing_ok=True)


# -- the backend ---------------------------------------------------------------------------

@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM (Snakemake or a scheduler stopping the job) raises SystemExit while the
    deployment runs, so leaving :class:`LocalFederation` stops its processes first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(f"the training job received {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _completed(plan: TrainPlan) -> int:
    ck = checkpoint.latest(checkpoint_dir(plan), plan.fingerprint())
    return 0 if ck is None else ck.round


def run_deployed(plan: TrainPlan, first_round: int
                 ) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Train rounds ``first_round``..``plan.rounds`` on a local Flower deployment; return the
    final global arrays and the history (from the final round's checkpoint, written by the
    deployed ServerApp). Raises :class:`FederationError` naming what failed, the last completed
    round and the logs; every process is stopped either way."""
    folder = (Path(plan.out_dir) / FOLDER).resolve()
    for pid in marked_processes(folder):  # a previous attempt's, had it been unable to stop them
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)  # a previous attempt's homes, keys and logs
    folder.mkdir(parents=True)
    server_plan = folder / "plan_server.json"
    _write_json(server_plan, plan.to_json())
    node_plans = {}
    for c in sorted(plan.centers):
        node_plans[c] = folder / f"plan_{c}.json"
        _write_json(node_plans[c], node_plan(plan, c).to_json())
    result = folder / "result.json"
    app = write_app(folder / "app", {"plan": str(server_plan), "result": str(result),
                                     "first-round": int(first_round)})
    name = plan.scenario.name
    t0 = time.monotonic()
    failure = None
    with _sigterm_raises(), LocalFederation(folder, node_plans,
                                            insecure=plan.deployment_insecure,
                                            threads=plan.threads) as fed:
        fed.start()
        runner = fed.submit(app)
        log.info("scenario %s: deployed federation (%s) on %s:%d, logs in %s", name,
                 "insecure" if plan.deployment_insecure else "TLS", HOST, fed.port, fed.logs)
        while runner.popen.poll() is None:
            if fed.exited():
                break
            if time.monotonic() - t0 > plan.deployment_timeout_s:
                failure = (f"the deployed run did not finish within "
                           f"train.deployment.timeout_s = {plan.deployment_timeout_s:g} s "
                           f"({fed.status()})")
                break
            time.sleep(POLL_S)
        if failure is None and (dead := fed.exited()):
            rnd = _completed(plan) + 1
            failure = "; ".join(
                f"{p.describe()} {p.exit_text()} during round {rnd} of {plan.rounds}"
                + (": every center trains in every round, so the round cannot complete "
                   "without it" if p.center is not None else "")
                + f". Its log {p.log_path}:\n{p.log_tail()}" for p in dead)
        if failure is None and runner.popen.returncode != 0:
            failure = f"`flwr run` {runner.exit_text()}:\n{runner.log_tail()}"
        if failure is None and not result.exists():
            failure = (f"the ServerApp wrote no result ({fed.status()}); its output "
                       f"{runner.log_path}:\n{runner.log_tail()}")
        if failure is None:
            record = json.loads(result.read_text())
            if record["error"] or record["completed_round"] != plan.rounds:
                failure = (f"{record['error'] or 'the ServerApp stopped early'} (a client's "
                           "traceback is in its SuperNode's log, supernode_<center>.log)")
    done = _completed(plan)
    if fed.survivors:
        log.warning("scenario %s: processes %s outlived the deployment", name, fed.survivors)
    if failure is not None:
        raise FederationError(f"scenario {name}: training stopped after round {done} of "
                              f"{plan.rounds} (train.backend deployment; logs in "
                              f"{folder / 'logs'}). {failure}")
    ck = checkpoint.latest(checkpoint_dir(plan), plan.fingerprint())
    if ck is None or ck.round != plan.rounds:
        raise FederationError(f"scenario {name}: the deployed run reported success but the "
                              f"newest checkpoint in {checkpoint_dir(plan)} is round {done}, "
                              f"not {plan.rounds}")
    log.info("scenario %s: deployed rounds %d-%d in %.1f s", name, first_round, plan.rounds,
             time.monotonic() - t0)
    return ck.arrays, ck.history
