"""Which scenarios and which patient the paper-style sCT comparison (paper 000 Fig. 4) shows.

Fig. 4: "a representative patient from external Center E under a 100% noise data poisoning
attack (γ = 1.0) ... The first row represents the no-poisoning baseline, while the other rows
correspond to a different poisoned training center ... the sCT generated with FedAvg and
FedMedian aggregation". "Representative" is made reproducible here: the patient whose
no-poisoning MAE is the median of the candidates (the lower median for an even count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from fedaudit.scenarios import Scenario

PAPER_GAMMA = 1.0
COLUMNS = ("fedavg", "fedmedian")


def comparison_gamma(scenarios: Mapping[str, Scenario]) -> float | None:
    """γ = 1.0 if it was run (the paper's worst case), else the largest γ run; None if no
    poisoned scenario with a FedAvg or FedMedian aggregation exists."""
    gammas = {s.gamma for s in scenarios.values()
              if s.poison_center is not None and s.aggregation in COLUMNS and not s.secagg}
    if not gammas:
        return None
    return PAPER_GAMMA if PAPER_GAMMA in gammas else max(gammas)


def comparison_rows(scenarios: Mapping[str, Scenario],
                    gamma: float) -> list[tuple[str, str | None, str | None]]:
    """(row label, FedAvg scenario, FedMedian scenario): the no-poisoning row first, then one
    row per poisoned center in name order. A scenario that was not run is None."""
    def find(aggregation: str, center: str | None) -> str | None:
        for s in scenarios.values():
            if (s.aggregation == aggregation and not s.secagg and s.poison_center == center
                    and (center is None or s.gamma == gamma)):
                return s.name
        return None

    centers = sorted({s.poison_center for s in scenarios.values()
                      if s.poison_center is not None and s.gamma == gamma})
    rows = [("no poisoning", find("fedavg", None), find("fedmedian", None))]
    rows += [(f"poisoned center {c}", find("fedavg", c), find("fedmedian", c)) for c in centers]
    return rows


def representative_patient(metrics: pd.DataFrame,
                           candidates: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """The (center, patient) among ``candidates`` whose MAE in ``metrics`` (one scenario's
    per-patient ``metrics.csv``) is the lower median; ties broken by name. Patients marked
    ``excluded`` by QC are not candidates."""
    if not candidates:
        raise ValueError("no candidate patients for the sCT comparison")
    wanted = set(candidates)
    rows = metrics[[(c, p) in wanted for c, p in zip(metrics["center"], metrics["patient"],
                                                     strict=True)]]
    missing = wanted - set(zip(rows["center"], rows["patient"], strict=True))
    if missing:
        raise ValueError(f"metrics have no MAE for {sorted(missing)}")
    if "excluded" in rows.columns:
        rows = rows[~rows["excluded"].astype(bool)]
        if rows.empty:
            raise ValueError("every candidate patient for the sCT comparison is QC-excluded")
    ordered = rows.sort_values(["mae", "center", "patient"]).reset_index(drop=True)
    pick = ordered.iloc[(len(ordered) - 1) // 2]
    return str(pick["center"]), str(pick["patient"])
