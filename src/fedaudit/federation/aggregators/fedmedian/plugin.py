"""FedMedian (Yin et al. 2018, Definition 1): the coordinate-wise median; no parameters."""

from pathlib import Path

from fedaudit.catalog import AggregatorSpec

AGGREGATOR = AggregatorSpec(name="fedmedian", label="FedMedian", folder=Path(__file__).parent,
                            function="fedaudit.federation.aggregation:fedmedian_rule")
