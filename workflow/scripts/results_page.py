"""Rule results_page: the run's verdict and tables with their hashes, date, machine and seeds
(fedaudit.report.results_page)."""

from _common import logged

with logged(snakemake) as log:
    from pathlib import Path

    import fedaudit
    from fedaudit.atomic import write_text
    from fedaudit.report.results_page import build_page, check_page, code_version

    p = snakemake.params
    results = Path(snakemake.input.front_page).parents[1]
    title = "Demo results" if p.demo else "Results"
    page = build_page(results, p.names, seeds=p.seeds, title=title,
                      code=code_version(Path(fedaudit.__file__).parents[2]))
    # the page must pass its own check before anyone reads it (tables of another configuration
    # may lie beside this run's: not this page's business)
    problems = check_page(page, results, complete=False)
    if problems:
        raise RuntimeError("the results page disagrees with results/: " + "; ".join(problems))
    write_text(page, snakemake.output[0])
    log.info("%s: %d tables, seeds %s", snakemake.output[0], len(p.names), p.seeds)
