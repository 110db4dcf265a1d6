"""Per-rule logging: what a job prints goes to its ``log:`` file, errors also to the console."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

LOGGER_NAME = "fedaudit"


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
    console = sys.__stderr__
    with open(log_path, "w", buffering=1) as fh:
        logger = logging.getLogger(LOGGER_NAME)
        logger.handlers.clear()
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        set_threads(threads)
        start = time.perf_counter()
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
                if console is not None:
                    print(f"FedAudit [{rule}] error: {exc}\n  (full log: {log_path})",
                          file=console)
                raise SystemExit(1) from None
            logger.info("rule %s finished in %.2f s", rule, time.perf_counter() - start)
