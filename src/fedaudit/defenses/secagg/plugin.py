"""SecAgg+ as a defense: Flower's ``secaggplus_mod`` on every client and the capturing
``SecAggPlusWorkflow`` on the server (paper 000's defense against FedMIA)."""

from pathlib import Path

from fedaudit.catalog import DefenseSpec

DEFENSE = DefenseSpec(
    name="secagg", title="SecAgg+", folder=Path(__file__).parent,
    client_mods=".workflow:client_mods", fit_workflow=".workflow:fit_workflow",
    # The server only ever sees the sum of masked vectors: a robust rule would "run" on that
    # single aggregate and silently return the mean.
    compatible=("fedavg",),
    why_incompatible="under SecAgg+ the server only sees the sum of masked updates, so "
                     "median/Krum/trimmed mean would silently become the mean. Use aggregation "
                     "fedavg with secagg.",
    min_clients=2)
