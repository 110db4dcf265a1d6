"""The tables that are not an attack's: synthesis quality (paper 000 Table 2) and the run's
runtimes (:mod:`fedaudit.report.runtimes`, no findings), registered in the catalog like the
attacks' so the report and the front page iterate over one list."""

from __future__ import annotations

from typing import Any

from fedaudit.catalog import TableSpec

TABLES = [TableSpec(name="quality",
                    paper="paper 000, Table 2",
                    description=("MAE (HU), SSIM, PSNR as mean ± sd per center, without and with "
                                 "SecAgg+, the constant predictor beside them and each MAE ÷ the "
                                 "constant's"),
                    category="Training", subcategory="Synthesis quality",
                    build=".core_tables:quality_table", gate=".core_tables:utility_gate",
                    findings=".core_tables:secagg_cost", order=100, seeds=True,
                    primary=("the federation's MAE ÷ the constant predictor's on its worst "
                             "center (the utility gate), every training seed")),
          TableSpec(name="runtimes",
                    description=("where the run's time went: job-minutes, wall span, CPU and peak "
                                 "memory per rule and per scenario, from every job's benchmark "
                                 "file"),
                    category="Runtimes", subcategory="Per rule and scenario",
                    build="fedaudit.report.runtimes:build_runtime_table", order=1000)]


def quality_table(inputs: Any, params: Any) -> Any:
    import pandas as pd

    from fedaudit.report import tables

    seeds = getattr(params, "seeds", None)
    return tables.quality_table(pd.read_csv(inputs.summary), plain=params.plain,
                                secagg=params.secure, external=params.external,
                                seeds=None if seeds is None else
                                {k: [tuple(r) for r in v] for k, v in dict(seeds).items()})


def utility_gate(data: Any, settings: dict[str, Any]) -> list[Any]:
    from fedaudit.report import verdict

    gate = verdict.utility_finding(data)
    return [gate] if gate else []


def secagg_cost(data: Any, settings: dict[str, Any]) -> list[Any]:
    from fedaudit.report import verdict

    cost = verdict.secagg_cost_finding(data)
    return [cost] if cost else []
