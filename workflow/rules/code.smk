# Every job depends on its code (fedaudit.code_digest): each script rule gets a param `code`, the
# digest of its script's import closure in src/fedaudit and of the catalog's plugin folders, so a
# change to the library code a result came from re-runs that job and what reads it (Snakemake
# alone only sees the thin script). Included last: it reads every rule defined above.
from fedaudit.code_digest import (  # noqa: E402
    catalog_folders,
    rule_digest,
    save_disk_cache,
    use_disk_cache,
)

CODE_PLUGIN_FOLDERS = catalog_folders(CATALOG)
# a memo of each file's digest by size and mtime: a parse re-reads only the files that changed
use_disk_cache(Path(".snakemake") / "fedaudit-code-digest.json")

for _rule in list(workflow.rules):
    if _rule.script is not None:
        _rule.set_params(
            code=rule_digest(_rule, CATALOG, STEP_SCRIPT, TABLE_SCRIPT, CODE_PLUGIN_FOLDERS)
        )
save_disk_cache()
