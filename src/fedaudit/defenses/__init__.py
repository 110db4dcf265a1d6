"""Countermeasures a scenario switches on by name (``defenses: [...]``), one folder each."""
