# Every job writes a Snakemake benchmark file (wall seconds, CPU time, peak memory) under
# results/benchmarks/<rule>/<wildcard values>.tsv; rule table_runtimes (fedaudit.report.runtimes)
# sums them into the report's runtime table. Set here, for every rule that runs code, so that
# no rule -- built-in or a plugin's -- is left out. Included last: it reads every rule defined above.
from fedaudit.report.runtimes import benchmark_path  # noqa: E402

BENCHMARKS = "results/benchmarks"
BENCHMARK_RULES = {}  # rule -> its wildcard names, in the order of the benchmark file's path
for _rule in list(workflow.rules):
    if _rule.script is not None and _rule.benchmark is None:
        # what the `benchmark:` directive does (Workflow.rule): the main Snakefile's path modifier
        _rule.benchmark_modifier = workflow.modifier.path_modifier
        _rule.benchmark = benchmark_path(BENCHMARKS, _rule.name, _rule.wildcard_names)
        BENCHMARK_RULES[_rule.name] = sorted(_rule.wildcard_names)
