# Comparisons (fedaudit.comparisons): tables and figures that read several attacks' and defenses'
# results, one folder each with its rules file (built-ins under src/fedaudit/comparisons/, a
# study's own through the config's `plugins`). Included after every attack's rules, whose
# outputs they read.

for _comparison in CATALOG.comparisons.values():
    if (_comparison.folder / "rules.smk").is_file():

        include: str(_comparison.folder / "rules.smk")
