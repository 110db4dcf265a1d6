"""The SLURM profile on a real one-node SLURM cluster: a cut of the DAG submitted through
``profiles/slurm`` (a copy with its placeholders filled, never the original) gives the same
numbers as a local run.

Needs Debian's ``slurmctld slurmd slurm-client munge`` and root (the daemons run as root); runs
when ``FEDAUDIT_SLURM=1`` (``.ci/run`` installs the packages and sets it). The cluster is
``tests/slurm/slurm.conf.in`` on free ports with its state in a temporary folder, installed at
``/etc/slurm`` (never over a real installation's file); the daemons are stopped by PID whatever
happens.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import BIN, REPO, run_snakemake

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("FEDAUDIT_SLURM") != "1" or not shutil.which("slurmctld"),
                       reason="a real SLURM cluster: FEDAUDIT_SLURM=1 and Debian's slurm "
                              "packages (.ci/run installs them)"),
]

# A cut of the DAG: demo data, preprocessing, splits, one federation, its evaluation and the
# constant predictor (about 50 jobs). Threads are the config's, so a local run and a SLURM run
# compute the same numbers.
CUT = {
    "seed": 3,
    "seeds": 1,
    "centers": {"A": {"role": "train", "source": {"type": "demo", "patients": 3}},
                "B": {"role": "train", "source": {"type": "demo", "patients": 3}},
                "E": {"role": "external", "source": {"type": "demo", "patients": 1}}},
    "demo": {"resolution_scale": 5.0},
    "preprocess": {"threads": 1, "n4": {"shrink": 2, "iterations": [20, 20]},
                   "cube": {"size": 32}},
    "train": {"rounds": 2, "model": {"base": 2}, "max_slices_per_volume": 4, "val_max_slices": 4,
              "lr": 0.001},
    "scenarios": {"unpoisoned": ["baseline"], "poisoning": {"gammas": []}},
    "execution": {"train": {"threads": 1, "device": "cpu"}, "evaluate": {"threads": 1}},
    "attacks": {"fedmia": {"enabled": False}, "dlg": {"enabled": False},
                "trap_weights": {"enabled": False}},
}
TARGET = "results/eval/summary.csv"
# The profile's training job takes 8 threads where the local run takes the config's 1: the model
# does not depend on the thread count (tests/test_federation.py), so the evaluation must agree to
# float round-off in HU.
HU_TOLERANCE = 1e-3
SLURM_ETC = Path("/etc/slurm")
OURS = "# written by FedAudit's tests/test_slurm.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    return template


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A one-node cluster: munged (started if not running), slurmctld and slurmd in the
    foreground as child processes, stopped by PID at the end."""
    root = tmp_path_factory.mktemp("slurm")
    state = root / "state"
    for sub in ("ctld", "d"):
        (state / sub).mkdir(parents=True)
    host = socket.gethostname()
    values = {"HOST": host, "STATE": str(state), "CPUS": "8", "MEM_MB": "32768",
              "USER": "root", "CTLD_PORT": str(_free_port()), "D_PORT": str(_free_port())}
    # The config must sit at SLURM's default path: the executor plugin drops every SLURM_*
    # variable (SLURM_CONF included) inside a job, so srun there reads /etc/slurm/slurm.conf.
    # A real cluster's file is never overwritten; one this test wrote earlier may be.
    conf = SLURM_ETC / "slurm.conf"
    if conf.exists() and OURS not in conf.read_text():
        pytest.skip(f"{conf} belongs to a real SLURM installation: not overwriting it")
    SLURM_ETC.mkdir(parents=True, exist_ok=True)
    conf.write_text(OURS + "\n" + _fill((REPO / "tests/slurm/slurm.conf.in").read_text(),
                                        values))
    (SLURM_ETC / "gres.conf").write_text(
        OURS + "\n" + _fill((REPO / "tests/slurm/gres.conf").read_text(), values))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[subprocess.Popen] = []
    munged_pid = None
    # Probe munge itself, not its socket file: a package's post-install start can leave a stale
    # socket behind with no daemon (seen on CI: "Connection refused"); --force takes it over.
    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        subprocess.run(["munged", "--force"], check=True, capture_output=True)
        munged_pid = int(Path("/run/munge/munged.pid").read_text())
        if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
            pytest.fail("munged started but `munge -n` still fails: SLURM cannot authenticate")
    try:
        for daemon in (["slurmctld", "-D", "-f", str(conf)],
                       ["slurmd", "-D", "-f", str(conf), "-N", host]):
            log = open(root / f"{daemon[0]}.out", "w")  # noqa: SIM115 - closed with the process
            started.append(subprocess.Popen(daemon, env=env, stdout=log, stderr=log))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True,
                                 text=True)
            if out.stdout.strip() == "idle":
                break
            time.sleep(1)
        else:
            logs = "\n".join((root / f"{d}.out").read_text()[-1500:]
                             for d in ("slurmctld", "slurmd"))
            pytest.fail(f"the SLURM test cluster did not come up within 60 s:\n{logs}")
        yield env
    finally:
        for proc in started:
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if munged_pid is not None:
            os.kill(munged_pid, signal.SIGTERM)
        for name in ("slurm.conf", "gres.conf"):
            (SLURM_ETC / name).unlink(missing_ok=True)


def _profile_copy(dst: Path) -> Path:
    """profiles/slurm with its placeholders filled for the test cluster, and squeue for job
    status (the test cluster keeps no accounting)."""
    shutil.copytree(REPO / "profiles" / "slurm", dst)
    cfg = dst / "config.yaml"
    text = cfg.read_text()
    assert "CHANGE_ME_partition" in text and "CHANGE_ME_account" in text
    text = text.replace("CHANGE_ME_partition", "ci").replace("CHANGE_ME_account", "ci")
    text = text.replace("# slurm-status-command: squeue", "slurm-status-command: squeue")
    cfg.write_text(text)
    assert yaml.safe_load(text)["slurm-status-command"] == "squeue"
    return dst


def test_the_slurm_profile_runs_a_cut_of_the_dag_like_a_local_run(
        cluster: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "cut.yaml"
    config.write_text(yaml.safe_dump(CUT))
    local, remote = tmp_path / "local", tmp_path / "slurm"
    for wd in (local, remote):
        shutil.copytree(REPO / "profiles", wd / "profiles")
    ran = run_snakemake(local, TARGET, "--cores", "2", "--configfile", str(config))
    assert ran.returncode == 0, ran.stderr[-3000:]
    profile = _profile_copy(tmp_path / "profile-slurm")
    env = {"SLURM_CONF": cluster["SLURM_CONF"], "PATH": f"{BIN}:{os.environ['PATH']}"}
    res = run_snakemake(remote, TARGET, "--profile", str(profile), "--configfile", str(config),
                        env=env, timeout=1500)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    # the big jobs went through sbatch (the small ones are local rules by design)
    assert "SLURM jobid" in res.stdout + res.stderr, (res.stdout + res.stderr)[-2000:]
    a = pd.read_csv(local / TARGET).set_index(["scenario", "center"]).sort_index()
    b = pd.read_csv(remote / TARGET).set_index(["scenario", "center"]).sort_index()
    assert list(a.index) == list(b.index) and len(a) > 0
    for col in [c for c in a.columns if c.startswith("mae")]:
        np.testing.assert_allclose(b[col], a[col], rtol=0, atol=HU_TOLERANCE, err_msg=col)
    # preprocessing (N4 included) runs with the config's threads under both executors: the QC
    # numbers agree exactly, wall-clock timings aside
    qc_local = pd.read_csv(local / "results/preprocessed/qc.tsv", sep="\t")
    qc_remote = pd.read_csv(remote / "results/preprocessed/qc.tsv", sep="\t")
    numbers = [c for c in qc_local.columns if not c.startswith("seconds")]
    pd.testing.assert_frame_equal(qc_local[numbers], qc_remote[numbers])
