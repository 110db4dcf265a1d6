"""FedAvg (McMahan et al. 2017, Algorithm 1): the example-weighted mean; no parameters."""

from pathlib import Path

from fedaudit.catalog import AggregatorSpec

AGGREGATOR = AggregatorSpec(name="fedavg", label="FedAvg", folder=Path(__file__).parent,
                            function="fedaudit.federation.aggregation:fedavg_rule")
