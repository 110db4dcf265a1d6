"""Rules table_*: one of the study's tables (paper 000 layout) as CSV, Markdown, LaTeX, HTML."""

from _common import logged

with logged(snakemake) as log:
    import pandas as pd

    from fedaudit.report import tables
    from fedaudit.report.render import FORMATS, write_table
    from fedaudit.scenarios import Scenario

    p, inp = snakemake.params, snakemake.input
    if p.kind == "quality":
        table = tables.quality_table(pd.read_csv(inp.summary), plain=p.plain, secagg=p.secure,
                                     external=p.external)
    elif p.kind == "poisoning":
        summary = pd.read_csv(inp.summary)
        scenarios = {name: Scenario(**spec) for name, spec in p.scenarios.items()}
        grid = tables.poisoning_grid(summary, pd.read_csv(inp.wilcoxon), scenarios)
        table = tables.poisoning_table(grid, summary, external=p.external,
                                       trimmed_is_median=p.trimmed_is_median)
    elif p.kind == "membership":
        table = tables.membership_table(pd.read_csv(inp.fedmia))
    elif p.kind == "inversion":
        table = tables.inversion_table(pd.read_csv(inp.dlg))
    else:
        raise ValueError(f"unknown table kind {p.kind!r}")
    write_table(table, {fmt: snakemake.output[fmt] for fmt in FORMATS})
    log.info("%s:\n%s", table.title, "\n".join(b.frame.to_string(index=False)
                                               for b in table.blocks))
