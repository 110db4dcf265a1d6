# Comparisons (fedaudit.comparisons): tables and figures that read several attacks' and defenses'
# results, one folder each with its rules file (built-ins under src/fedaudit/comparisons/, a
# study's own through the config's `plugins`). Included after every attack's rules, whose
# outputs they read; a comparison whose required attacks are not loaded is left out.

for _comparison in CATALOG.comparisons.values():
    if (_comparison.folder / "rules.smk").is_file() and all(
        a in CATALOG.attacks for a in _comparison.requires
    ):

        include: str(_comparison.folder / "rules.smk")
