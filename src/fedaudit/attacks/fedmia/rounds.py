"""Which rounds of a server log FedMIA reads (rule ``fedmia_measure``'s ``rounds`` param).

The audited federations are read on ``attacks.fedmia.rounds``. The memorising control trains a
budget of its own (``scenarios.membership_control.train``): when its log holds every round
(its ``train.server_log.rounds: all``) FedMIA reads them all and averages each candidate's
Φ(z) over them (:mod:`fedaudit.attacks.fedmia.algorithm`, step 2). FedMIA exploits "aggregated
update information across clients and rounds" (paper 000, Related Work, on Zhu et al., CVPR
2025); paper 000 reads the final round. One round is not a stable control:
on the demo its last-round pooled AUC was 0.86 and 0.79 on seeds 42 and 43 (one CPU), its
per-round AUCs 0.50–0.93, while every round together read 0.93 on both (config/README.md,
"scenarios"). A numbered round, which is the study's, becomes the control's last.
"""

from __future__ import annotations

from collections.abc import Sequence

Rounds = str | int | Sequence[int]


def rounds_read(fedmia_rounds: Rounds, *, control: bool, log_rounds: str) -> Rounds:
    """The ``rounds`` FedMIA reads from one scenario's log: ``fedmia_rounds``
    (``attacks.fedmia.rounds``) for an audited federation; for the memorising control
    ``all`` when its log holds every round (``log_rounds``, its ``train.server_log.rounds``),
    else ``fedmia_rounds`` when it names no round number, else ``last``."""
    if log_rounds not in ("all", "last"):
        raise ValueError(f"train.server_log.rounds must be 'all' or 'last'; got {log_rounds!r}")
    if not control:
        return fedmia_rounds
    if log_rounds == "all":
        return "all"
    return fedmia_rounds if fedmia_rounds in ("last", "all") else "last"
