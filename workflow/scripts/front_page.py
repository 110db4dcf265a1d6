"""Rule front_page: the report's introduction followed by the audit verdict from the tables."""

from _common import logged

with logged(snakemake) as log:
    import json
    from pathlib import Path

    import pandas as pd

    from fedaudit.report import verdict

    data = {name: pd.read_csv(path)
            for name, path in zip(snakemake.params.names, snakemake.input.tables, strict=True)}
    findings = []
    if "quality" in data and (gate := verdict.utility_finding(data["quality"])):
        findings.append(gate)
    flags = json.loads(Path(snakemake.input.qc_flags).read_text(encoding="utf-8"))
    findings.append(verdict.data_quality_finding(flags))
    if "membership" in data:
        findings.append(verdict.membership_finding(data["membership"],
                                                   unit=snakemake.params.fedmia_unit))
    if "inversion" in data:
        findings.append(verdict.inversion_finding(data["inversion"]))
    if "poisoning" in data:
        findings += verdict.poisoning_findings(data["poisoning"])
    if "quality" in data and (cost := verdict.secagg_cost_finding(data["quality"])):
        findings.append(cost)
    text = verdict.front_page(snakemake.params.intro, findings, demo=snakemake.params.demo)
    Path(snakemake.output[0]).write_text(text, encoding="utf-8")
    for f in findings:
        log.info("%s [%s]: %s", f.topic, f.level, f.sentence)
