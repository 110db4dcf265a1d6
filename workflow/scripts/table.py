"""Rules table_*: one of the study's tables (paper 000 layout) as CSV, Markdown, LaTeX, HTML,
built by the TableSpec registered under ``params.table`` (fedaudit.catalog)."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.catalog import catalog
    from fedaudit.report.render import FORMATS, write_table

    spec = catalog(snakemake.config["plugins"]).tables[snakemake.params.table]
    table = spec.call("build", snakemake.input, snakemake.params)
    if spec.primary:  # fixed in the catalog before any result, stated with every table
        table.notes.append(f"Primary statistic, the one the verdict reads: {spec.primary}.")
    write_table(table, {fmt: snakemake.output[fmt] for fmt in FORMATS})
    log.info("%s:\n%s", table.title, "\n".join(b.frame.to_string(index=False)
                                               for b in table.blocks))
