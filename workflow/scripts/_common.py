"""Shared preamble of the workflow scripts: every job runs this checkout's ``fedaudit``.

The checkout's ``src`` goes first on ``sys.path``, always: Snakemake's script preamble appends
the paths of the process that planned the job, so an installed copy (an editable install of
another clone sharing the virtualenv, a site-packages wheel) would otherwise win and a local code
change would have no effect. The imported package must then lie inside this ``src``; anything
else is an error, and the log's first line names the path and version the job runs
(:func:`fedaudit.logs.rule_logging`).
"""

import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parents[2] / "src"
while str(_SRC) in sys.path:
    sys.path.remove(str(_SRC))
sys.path.insert(0, str(_SRC))

import fedaudit  # noqa: E402

if not Path(fedaudit.__file__).resolve().is_relative_to(_SRC):
    raise ImportError(f"this job must run the checkout's FedAudit ({_SRC}) but imported "
                      f"{fedaudit.__file__} (imported before the preamble ran?)")

from fedaudit.logs import rule_logging  # noqa: E402


def logged(smk):
    """The logging context for the running rule (log file, threads, readable errors)."""
    return rule_logging(smk.log[0], smk.rule, smk.threads)
