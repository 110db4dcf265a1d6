"""Krum (Blanchard et al. 2017, Section 4) with its tolerated number of malicious clients f."""

from pathlib import Path

from fedaudit.catalog import AggregatorSpec

AGGREGATOR = AggregatorSpec(name="krum", label="Krum", folder=Path(__file__).parent,
                            function="fedaudit.federation.aggregation:krum_rule",
                            check="fedaudit.federation.aggregation:krum_check")
