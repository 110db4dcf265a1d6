"""Test-time evasion across aggregation rules and noise defenses (paper 004 §VI): a comparison
plugin (:class:`fedaudit.catalog.ComparisonSpec`) reading the evasion attack's summary and the
training histories."""
