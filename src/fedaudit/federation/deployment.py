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
  module that takes ``server_app`` and ``client_app`` from
  :mod:`fedaudit.federation.deployed_app`), which the CLI packs
  into a FAB; the ServerApp's output streams into ``logs/run.log``.

TLS (default): a certificate authority and one server certificate per process that serves
(the SuperLink; each SuperNode's Runtime API, which its ClientApps call) are made for the run
(:func:`fedaudit.federation.certificates.make_certificates`); SuperNodes, SuperExecs and the
CLI verify them against the CA. ``execution.train.deployment.insecure: true`` runs everything
over plain HTTP instead. Private keys are deleted when the run ends.

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
center that did not reply.) ``execution.train.deployment.timeout_s`` bounds the whole run.

Cost: Flower's SuperNodes and ServerApp poll every 3 s and every message starts a ClientApp
process (imports included), so a round of the tiny federation takes 30-60 s (on 2 busy cores)
where in-process takes ~1 s: the overhead is per message, not per slice.
"""
from __future__ import annotations

import contextlib
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import fedaudit
from fedaudit.federation import checkpoint
from fedaudit.federation.apps import (
    checkpoint_dir,
)
from fedaudit.federation.certificates import Certificates, key_path, make_certificates
from fedaudit.federation.deployed_app import node_plan, toml_table, write_app, write_json
from fedaudit.federation.plan import TrainPlan
from fedaudit.federation.processes import (
    HOST,
    MARKER,
    POLL_S,
    STOP_GRACE_S,
    Process,
    die_with,
    flower_bin,
    free_port,
    is_running,
    marked_processes,
    process_tree,
    start_reaper,
    stop_reaper,
)
from fedaudit.federation.strategy import FederationError

log = logging.getLogger(__name__)

FOLDER = "deployment"  # under the scenario's out_dir
CONNECTION = "fedaudit"  # the SuperLink connection's name in the CLI's Flower config
READY_TIMEOUT_S = 120.0  # a SuperLink that does not listen by then has failed


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
        self.reaper: subprocess.Popen | None = None
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
                                 start_new_session=True, preexec_fn=die_with(os.getpid()))
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
            names = ["superlink", *(f"supernode-{c}" for c in centers)]
            tls = self.folder / "tls"
            # told before the keys exist: a SIGKILL at any point after leaves none behind
            self.reaper = start_reaper([key_path(tls, n) for n in names])
            self.certs = make_certificates(tls, names)
        self.port = free_port()
        cmd = [flower_bin("flower-superlink"), "--host", HOST, "--port", str(self.port),
               "--disable-runtime-dependency-installation"]
        cmd += self._server_tls("superlink")
        link = self._spawn("the SuperLink", cmd, self.home / "superlink", "superlink.log")
        self._wait_listening(link)
        for c in centers:
            node_cfg = self.folder / f"node_{c}.toml"
            node_cfg.write_text(toml_table({"center": c, "plan": str(self.node_plans[c]),
                                             "partition-id": sorted(centers).index(c),
                                             "num-partitions": len(centers)}))
            cmd = [flower_bin("flower-supernode"), "--superlink", f"{HOST}:{self.port}",
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
                                         f"[superlink.{CONNECTION}]\n" + toml_table(conn))

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
        cmd = [flower_bin("flwr"), "run", str(app), CONNECTION, "--stream"]
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
            res = subprocess.run([flower_bin("flwr"), "ls", CONNECTION, "--run-id", str(rid),
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
        pids = process_tree(p.popen.pid for p in self.processes if p.popen.poll() is None)
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
        if self.reaper is not None:  # deletes the private keys, and has once it returns
            stop_reaper(self.reaper)


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
    write_json(server_plan, plan.to_json())
    node_plans = {}
    for c in sorted(plan.centers):
        node_plans[c] = folder / f"plan_{c}.json"
        write_json(node_plans[c], node_plan(plan, c).to_json())
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
                failure = (f"the deployed run did not finish within execution.train."
                           f"deployment.timeout_s = {plan.deployment_timeout_s:g} s "
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
                              f"{plan.rounds} (execution.train.backend deployment; logs in "
                              f"{folder / 'logs'}). {failure}")
    ck = checkpoint.latest(checkpoint_dir(plan), plan.fingerprint())
    if ck is None or ck.round != plan.rounds:
        raise FederationError(f"scenario {name}: the deployed run reported success but the "
                              f"newest checkpoint in {checkpoint_dir(plan)} is round {done}, "
                              f"not {plan.rounds}")
    log.info("scenario %s: deployed rounds %d-%d in %.1f s", name, first_round, plan.rounds,
             time.monotonic() - t0)
    return ck.arrays, ck.history
