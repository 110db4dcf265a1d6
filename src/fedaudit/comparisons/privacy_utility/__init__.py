"""The noise defenses' privacy-utility comparison (paper 003, Table III): a comparison plugin
(:class:`fedaudit.catalog.ComparisonSpec`) reading the inversion suite, FedMIA, the noise replay
and the evaluation."""
