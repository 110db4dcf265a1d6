"""ε of DP-FedAvg from a maintained accountant (Google's ``dp-accounting``, RDP accountant).

The mechanism (McMahan et al. 2018, "Learning Differentially Private Recurrent Language
Models", Alg. 1 and §3): per round each participating client's update is clipped to L2 norm
``C`` and Gaussian noise of std ``z·C`` is added (here by the client itself,
:mod:`fedaudit.defenses.update_noise`). The guarantee is **user level**: the protected unit is
one client's whole dataset (a hospital), the adjacency is add/remove-one-client (a client with
no data contributes a zero update), so one round's sensitivity is ``C`` and one round is the
Gaussian mechanism with noise multiplier ``z``. Every client takes part in every round
(sampling rate q = 1), so ``T`` rounds are the T-fold composition; with q < 1 each round is the
Poisson-subsampled Gaussian (McMahan et al. 2018 §3, Abadi et al. 2016 §3.1). Everything the
server or anyone else derives from the noised updates (the global models) is post-processing.
**Two adjacencies, both reported** (:func:`epsilons`): add/remove-one-client (sensitivity
``C``, noise multiplier ``z``: McMahan et al.'s) and replace-one-client (a hospital's data swapped
for any other data: ``Δ − Δ'`` has norm up to ``2C``, so the same noise is multiplier ``z / 2``),
which is what a fixed, known set of hospitals needs: the server knows who takes part, so "was
this hospital in the federation" is not the question, "what was in its data" is.

The accounting is Rényi DP (Mironov 2017, "Rényi Differential Privacy", Prop. 3 and Prop. 7;
subsampled Gaussian: Mironov, Talwar & Zhang 2019) as implemented by
``dp_accounting.rdp.RdpAccountant``, whose conversion to (ε, δ) is Canonne, Kamath & Steinke
2020, Prop. 12 (tighter than Abadi et al.'s moments-accountant tail bound). No formula is
written here.

``laplace_noise`` has no clipping, so no finite sensitivity and no ε: :func:`scenario_epsilon`
returns None for it (tables print "—").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def epsilon(noise_multiplier: float, rounds: int, delta: float,
            sampling_rate: float = 1.0) -> float:
    """ε of ``rounds`` rounds of the Gaussian mechanism with ``noise_multiplier`` z (noise std
    over sensitivity), each on a Poisson sample of clients of rate ``sampling_rate`` (1: every
    client every round), at ``delta``; RDP accountant of ``dp-accounting`` (module docstring)."""
    from dp_accounting import dp_event
    from dp_accounting.rdp import RdpAccountant

    if noise_multiplier <= 0:
        return float("inf")
    if rounds < 0 or not 0 < sampling_rate <= 1 or not 0 < delta < 1:
        raise ValueError(f"need rounds >= 0, 0 < sampling_rate <= 1, 0 < delta < 1; got "
                         f"{rounds}, {sampling_rate}, {delta}")
    if rounds == 0:
        return 0.0
    event: Any = dp_event.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        event = dp_event.PoissonSampledDpEvent(sampling_rate, event)
    accountant = RdpAccountant()
    accountant.compose(dp_event.SelfComposedDpEvent(event, int(rounds)))
    return float(accountant.get_epsilon(delta))


ADD_REMOVE, REPLACE_ONE = "add/remove one hospital", "replace one hospital"
DP_FEDAVG = "dp_fedavg"


def epsilons(noise_multiplier: float, rounds: int, delta: float) -> dict[str, float]:
    """ε under both adjacencies (module docstring): add/remove-one-client (sensitivity C) and
    replace-one-client (sensitivity 2C, i.e. multiplier z/2)."""
    return {ADD_REMOVE: epsilon(noise_multiplier, rounds, delta),
            REPLACE_ONE: epsilon(noise_multiplier / 2.0, rounds, delta)}


def scenario_epsilon(defenses: Iterable[Mapping[str, Any]], rounds: int) -> float | None:
    """ε of a scenario's update noise after ``rounds`` rounds: DP-FedAvg's add/remove-one-client
    ε from :func:`epsilon` (every client every round), None when the scenario has no DP guarantee
    (no noise defense, or Laplace noise without clipping)."""
    from fedaudit.scenarios import noise_defense

    d = noise_defense(defenses)
    if d is None or d["name"] != DP_FEDAVG:
        return None
    return epsilon(float(d["noise_multiplier"]), rounds, float(d["delta"]))


# ------------------------------------------------------------ the family's hooks (plugin.py)


def budget_fields(entry: Mapping[str, Any], rounds: int, history: Any = None,
                  slices_per_patient: int | None = None) -> dict[str, float]:
    """``NoiseFamily.budget``: ε adding or removing one hospital (``epsilon``) and replacing
    one (``epsilon_replace``) after ``rounds`` rounds (:func:`epsilons`)."""
    both = epsilons(float(entry["noise_multiplier"]), rounds, float(entry["delta"]))
    return {"epsilon": both[ADD_REMOVE], "epsilon_replace": both[REPLACE_ONE]}


def budget_text(budget: Mapping[str, Any]) -> str:
    """``NoiseFamily.budget_text``: both adjacencies in one table cell."""
    return (f"{float(budget['epsilon']):.3g} add/remove one hospital · "
            f"{float(budget['epsilon_replace']):.3g} replace one hospital")


def budget_note(levels: Any, reference: str) -> str:
    """``NoiseFamily.budget_note``: a finding's ε list is add/remove; the replace-one list
    follows (``levels``: the family's rows of the privacy-utility frame)."""
    if "epsilon_replace" not in levels:
        return ""
    return (" adding or removing one hospital, "
            f"{' → '.join(f'{e:.3g}' for e in levels['epsilon_replace'].astype(float))}"
            " replacing one")
