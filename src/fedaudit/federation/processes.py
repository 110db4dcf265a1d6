"""The processes of a deployed federation (:mod:`fedaudit.federation.deployment`): free ports,
Flower's executables, each child tied to the job's life (the kernel signals it when the job
dies), and the teardown that finds every process of a deployment by its process tree and by a
marker in its environment."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Every process of one deployment inherits this variable (value: its folder), so the teardown
# finds the app processes Flower's SuperExecs started even when their parents are gone.
MARKER = "FEDAUDIT_DEPLOYMENT"
HOST = "127.0.0.1"
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL
POLL_S = 0.5

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


def die_with(parent: int) -> Callable[[], None]:
    """``preexec_fn`` of a child: SIGTERM when the job dies (Linux); exits at once if the job
    is already gone."""
    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)
    return setup


# The reaper blocks on a pipe whose only write end the job holds. However the job ends (return,
# exception, SIGTERM, SIGKILL), the kernel closes that end; the reaper reads end-of-file and
# deletes the files it was given. Isolated mode (-I): no site packages or PYTHON* variables.
_REAPER = """
import os, sys
sys.stdin.buffer.read()
for path in sys.argv[1:]:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
"""


def start_reaper(paths: Sequence[str | Path]) -> subprocess.Popen:
    """A process that deletes ``paths`` once this job is gone, by whatever exit (a SIGKILL gives
    the job no chance to delete them itself). Start it before the files exist. It runs in its
    own session, so a signal to the job's process group does not stop it first; the job ends it
    early with :func:`stop_reaper`. A child forked (not exec'd) by the job holds the pipe too
    and delays the deletion until it exits."""
    return subprocess.Popen([sys.executable, "-I", "-c", _REAPER, *map(str, paths)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            start_new_session=True)


def stop_reaper(reaper: subprocess.Popen, timeout: float = 10.0) -> None:
    """Close the job's end of the pipe: the reaper deletes its files now and exits."""
    if reaper.stdin is not None and not reaper.stdin.closed:
        reaper.stdin.close()
    try:
        reaper.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait()


def flower_bin(name: str) -> str:
    """A Flower console script of this interpreter's environment (the one the job runs in)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"execution.train.backend 'deployment' needs Flower's `{name}` "
                                f"command (pip install flwr); not in {local.parent} nor on PATH")
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


def process_tree(roots: Iterable[int]) -> list[int]:
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
