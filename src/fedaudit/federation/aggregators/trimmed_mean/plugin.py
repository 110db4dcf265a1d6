"""The coordinate-wise beta-trimmed mean (Yin et al. 2018, Definition 2)."""

from pathlib import Path

from fedaudit.catalog import AggregatorSpec

AGGREGATOR = AggregatorSpec(name="trimmed_mean", label="Trimmed mean",
                            folder=Path(__file__).parent,
                            function="fedaudit.federation.aggregation:trimmed_mean_rule")
