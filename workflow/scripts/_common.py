"""Shared preamble of the workflow scripts: make ``fedaudit`` importable from the repo's src/.

Needed under ``--use-conda``, where the rule's environment has the dependencies but not an
installed FedAudit; in a plain install the package is already importable and this is a no-op.
"""

import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parents[2] / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from fedaudit.logs import rule_logging  # noqa: E402


def logged(smk):
    """The logging context for the running rule (log file, threads, readable errors)."""
    return rule_logging(smk.log[0], smk.rule, smk.threads)
