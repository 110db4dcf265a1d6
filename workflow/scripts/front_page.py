"""Rule front_page: the report's introduction followed by the audit verdict from the tables:
the utility gates first, then the data-quality flags, then every table's findings in the order
their TableSpecs give (fedaudit.catalog)."""

from _common import logged

with logged(snakemake) as log:
    import json
    from pathlib import Path

    import pandas as pd

    from fedaudit.atomic import write_text
    from fedaudit.catalog import catalog, ordered_tables
    from fedaudit.report import verdict

    p = snakemake.params
    cat = catalog(snakemake.config["plugins"])
    data = dict(zip(p.names, (pd.read_csv(f) for f in snakemake.input.tables), strict=True))
    specs = ordered_tables(cat, p.names)
    findings = [f for spec in specs
                for f in spec.call("gate", data[spec.name], p.settings[spec.name], default=[])]
    flags = json.loads(Path(snakemake.input.qc_flags).read_text(encoding="utf-8"))
    findings.append(verdict.data_quality_finding(flags))
    owners = [None] * len(findings)  # the table whose plugin a finding comes from
    seeds = list(p.seeds)
    for spec in specs:
        found = spec.call("findings", data[spec.name], p.settings[spec.name], default=[])
        # with several training seeds, the lines of a table that reads one say which
        findings += (found if spec.seeds or len(seeds) == 1
                     else [verdict.one_seed(f, seeds[0]) for f in found])
        owners += [spec] * len(found)
    # significance claims corrected for their number across the page (Holm)
    findings = verdict.holm_corrected(findings)
    # the summary table's who-attacks and what-to-do cells, from the table's plugin, for the
    # level each line has after the correction
    findings = [f if spec is None else
                verdict.with_table(f, cat.attacker_of(spec.name),
                                   spec.call("advice", f.level, default=""))
                for f, spec in zip(findings, owners, strict=True)]
    thresholds = [t for spec in specs
                  if (t := spec.call("thresholds", p.settings[spec.name]))]
    text = verdict.front_page(p.intro, findings, demo=p.demo, thresholds=thresholds,
                              attackers=p.attackers)
    write_text(text, snakemake.output[0])
    for f in findings:
        log.info("%s [%s]: %s", f.topic, f.level, f.sentence)
