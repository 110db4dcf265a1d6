"""Per-rule logging: what a job prints goes to its ``log:`` file, errors also to the console."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

LOGGER_NAME = "fedaudit"
# ANSI colour and cursor codes (Flower's console handler colours its level names)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# the running rule's console prefix (None outside a rule: tests, library use)
_CONSOLE_TAG: str | None = None


class _PlainText(io.TextIOBase):
    """A log file as a plain-text stream: colour codes removed, and each carriage-return
    redraw of a progress bar (tqdm) kept as its own line instead of overprinting one line,
    so ``tail -f`` and a text viewer show every update."""

    def __init__(self, fh: TextIO) -> None:
        self._fh = fh
        self._at_line_start = True

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        text = _ANSI.sub("", s).replace("\r\n", "\n")
        out = []
        for ch in text:
            if ch == "\r":
                if self._at_line_start:
                    continue
                ch = "\n"
            out.append(ch)
            self._at_line_start = ch == "\n"
        self._fh.write("".join(out))
        return len(s)

    def flush(self) -> None:
        self._fh.flush()

    # what libraries ask of sys.stdout / sys.stderr: a child process given the descriptor
    # writes to the log file directly (unfiltered)
    def fileno(self) -> int:
        return self._fh.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return self._fh.encoding


def console(message: str) -> None:
    """One line on the console Snakemake runs in (beside the job's log), for progress a user
    should see while a long job runs (a training round); nothing outside a rule."""
    if _CONSOLE_TAG is not None and sys.__stderr__ is not None:
        print(f"{_CONSOLE_TAG} {message}", file=sys.__stderr__, flush=True)


@contextlib.contextmanager
def rule_logging(log_path: str | Path, rule: str, threads: int = 1) -> Iterator[logging.Logger]:
    """Route logging, stdout and stderr of a rule's script into its log file.

    On failure the full traceback goes to the log and one readable line (which names the file or
    key at fault, as every FedAudit error does) goes to the console, then the job exits non-zero so
    Snakemake marks only this job as failed.
    """
    from fedaudit import __version__
    from fedaudit.runtime import set_threads

    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    global _CONSOLE_TAG
    console_stream = sys.__stderr__
    with open(log_path, "w", buffering=1) as raw:
        fh = _PlainText(raw)
        logger = logging.getLogger(LOGGER_NAME)
        logger.handlers.clear()
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        set_threads(threads)
        start = time.perf_counter()
        _CONSOLE_TAG = f"FedAudit [{rule} {log_path.stem}]"
        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            try:
                # which FedAudit the job runs (workflow/scripts/_common.py puts this checkout's
                # first): a second clone sharing a virtualenv runs its own code
                logger.info("rule %s started (%d threads), FedAudit %s from %s", rule, threads,
                            __version__, Path(__file__).resolve().parent)
                yield logger
            except Exception as exc:
                fh.write(traceback.format_exc())
                logger.error("rule %s failed: %s", rule, exc)
                if console_stream is not None:
                    print(f"FedAudit [{rule}] error: {exc}\n  (full log: {log_path})",
                          file=console_stream)
                raise SystemExit(1) from None
            finally:
                _CONSOLE_TAG = None
            logger.info("rule %s finished in %.2f s", rule, time.perf_counter() - start)
