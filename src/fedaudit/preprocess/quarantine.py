"""A patient whose data cannot be preprocessed is recorded, not lost with the study.

Each per-patient step (register, head mask, N4, finalize, QC) runs through :func:`run_step`. When
the patient's own data is at fault -- a :class:`~fedaudit.preprocess.pipeline.PatientError` or
:class:`~fedaudit.io.VolumeError`, both of which name the file -- the step writes a *quarantine
record* (:func:`fedaudit.io.write_quarantine`) in place of each of its outputs, and the next steps
pass it on without doing any work. The QC table then decides (``preprocess.on_error``,
:func:`fedaudit.preprocess.outliers.apply_on_error`): ``fail`` stops the study there, naming
every such patient and its error at once; ``exclude`` records the patient in ``qc.tsv`` as
failed and goes on without it.

A quarantine record is a small JSON text, never a volume: any reader that does not skip the
patient fails on it with a message naming the patient and the step
(:func:`fedaudit.io.read_volume`), so a failed patient can never be used by mistake. Only data
errors are caught; a bug (``TypeError``, ``KeyError``), a killed job or a full disk still fails
the job as before.

Keeping the decision in the QC table (a param there) and out of the steps means switching
``on_error`` re-runs only that table, not every patient's preprocessing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fedaudit.io import VolumeError, quarantine_record, write_quarantine

log = logging.getLogger("fedaudit")


def upstream_failure(inputs: Iterable[str | Path]) -> dict[str, Any] | None:
    """The first quarantine record among ``inputs`` (files an earlier step wrote), if any."""
    for path in inputs:
        record = quarantine_record(path)
        if record is not None:
            return record
    return None


def run_step(step: str, *, center: str, patient: str, inputs: Iterable[str | Path],
             outputs: Iterable[str | Path], work: Callable[[], object],
             on_failure: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """Run one patient's preprocessing ``step`` (``work``), or record why it cannot run.

    An input already quarantined by an earlier step is passed on (``work`` does not run); a
    :class:`~fedaudit.preprocess.pipeline.PatientError` or :class:`~fedaudit.io.VolumeError`
    raised by ``work`` quarantines every output. ``on_failure`` (the QC step's figure) then
    writes what must be more than a record. Returns the quarantine record, or None when the
    step ran."""
    from fedaudit.logs import console
    from fedaudit.preprocess.pipeline import PatientError

    outputs = [Path(p) for p in outputs]
    record = upstream_failure(inputs)
    if record is not None:
        log.warning("%s/%s failed at step %s; passed on without running %s: %s", center,
                    patient, record["step"], step, record["error"])
        record = write_quarantine(outputs, center=center, patient=patient,
                                  step=record["step"], error=record["error"])
    else:
        try:
            work()
            return None
        except (PatientError, VolumeError) as exc:
            log.error("%s/%s cannot be preprocessed (step %s): %s", center, patient, step, exc)
            console(f"{center}/{patient} recorded as failed at {step}: {exc}")
            record = write_quarantine(outputs, center=center, patient=patient, step=step,
                                      error=str(exc))
    if on_failure is not None:
        on_failure(record)
    return record



def run_rule_step(smk: Any, step: str, work: Callable[[], object],
                  outputs: Iterable[str | Path] | None = None,
                  on_failure: Callable[[dict[str, Any]], None] | None = None
                  ) -> dict[str, Any] | None:
    """:func:`run_step` for a Snakemake job ``smk`` of a per-patient rule: its wildcards name
    the patient, its inputs are checked, its outputs (or ``outputs``) are quarantined."""
    return run_step(step, center=smk.wildcards.center, patient=smk.wildcards.patient,
                    inputs=list(smk.input),
                    outputs=list(smk.output) if outputs is None else outputs,
                    work=work, on_failure=on_failure)
