"""Poisoning's table and findings for the catalog (the builders are paper 000 Table 3's, in
:mod:`fedaudit.report.tables` and :mod:`fedaudit.report.verdict`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from fedaudit.report import tables, verdict
from fedaudit.scenarios import Scenario


def poisoning_table(inputs: Any, params: Any) -> tables.Table:
    summary = pd.read_csv(inputs.summary)
    scenarios = {name: Scenario.from_dict(spec) for name, spec in params.scenarios.items()}
    grid = tables.poisoning_grid(summary, pd.read_csv(inputs.wilcoxon), scenarios,
                                 study_seed=getattr(params, "seed", None))
    return tables.poisoning_table(grid, summary, external=params.external,
                                  trimmed_is_median=params.trimmed_is_median)


def poisoning_findings(data: pd.DataFrame, settings: dict[str, Any]) -> list[verdict.Finding]:
    return verdict.poisoning_findings(data)


def advice(level: str) -> str:
    """What a reader does about a poisoning finding (the front page's summary table)."""
    return {
        "high": "one client's bad data harms other hospitals' sCT: use an aggregation the "
                "poisoning table shows holding, and check each client's data",
        "moderate": "one client's bad data measurably degrades other hospitals' sCT: prefer an "
                    "aggregation the poisoning table shows holding",
    }.get(str(level), "")
