"""The toy attack's steps: ``attack`` (the attacker: the trained model and candidate patients;
then the evaluator's truth from the splits) and the table builder and finding."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedaudit.attacks.views import ModelView
from fedaudit.catalog import Job
from fedaudit.data.slices import load_volume
from fedaudit.intensity import hu_to_unit
from fedaudit.io import read_json
from fedaudit.report.tables import Block, Table
from fedaudit.report.verdict import Finding


def patient_loss(model: torch.nn.Module, folder: str, slices: int) -> float:
    """Mean L1 loss (HU normalised to [0, 1]) over ``slices`` axial slices through the head."""
    vol = load_volume(folder)
    zs = np.flatnonzero(vol.mask.any(axis=(1, 2)))
    pick = zs[np.linspace(0, len(zs) - 1, slices).round().astype(int)]
    mr = torch.from_numpy(vol.mr[pick][:, None])
    ct = torch.from_numpy(hu_to_unit(vol.ct[pick])[:, None])
    with torch.no_grad():
        return float(torch.mean(torch.abs(model(mr) - ct)))


def attack(job: Job, log: logging.Logger) -> None:
    p = job.params
    model = ModelView(job.input.model).model()
    rows = []
    for center, folder in p.candidates:
        rows.append({"center": center, "patient": Path(folder).name,
                     "loss": patient_loss(model, folder, p.slices)})
    scores = pd.DataFrame(rows)
    # attacker: member if the loss is below its center's median
    med = scores.groupby("center")["loss"].transform("median")
    scores["predicted_member"] = scores["loss"] < med
    # evaluator: the truth from the splits
    members = {(r["center"], x) for r in map(read_json, job.input.splits) for x in r["train"]}
    scores["member"] = [(c, q) in members for c, q in zip(scores.center, scores.patient,
                                                           strict=True)]
    scores.insert(0, "scenario", job.wildcards.scenario)
    scores.to_csv(job.output[0], index=False)
    log.info("%d candidates, accuracy %.2f", len(scores),
             (scores.predicted_member == scores.member).mean())


def build_table(inputs: Any, params: Any) -> Table:
    scores = pd.concat([pd.read_csv(f) for f in inputs.scores], ignore_index=True)
    data = (scores.assign(correct=scores.predicted_member == scores.member)
            .groupby("scenario", as_index=False)
            .agg(patients=("patient", "size"), accuracy=("correct", "mean")))
    data["chance"] = 0.5
    view = data.rename(columns={"scenario": "Scenario", "patients": "Patients",
                                "accuracy": "Accuracy", "chance": "Chance"})
    return Table("loss_membership", "Membership by loss threshold (toy)", data,
                 [Block(view.round(2).astype(str))])


def findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[Finding]:
    return [Finding("Membership by loss threshold (toy)", "info",
                    f"{r.scenario}: accuracy {r.accuracy:.2f} on {int(r.patients)} patients "
                    "(chance 0.50).") for r in data.itertuples()]
