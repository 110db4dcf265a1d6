"""The SecAgg+ server's real view: every client's masked vector, exactly as the server receives it.

Under SecAgg+ (Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead",
CCS 2020; Flower's ``SecAggPlusWorkflow`` + ``secaggplus_mod``) the server never receives a
client's update in the clear. In the protocol's "collect masked vectors" stage each client k
replies with a list of integer arrays (Flower 1.41, ``flwr/client/mod/secure_aggregation/
secaggplus_mod.py``, ``_collect_masked_vectors``)::

    q_ratio_k = round(n_k / max_weight * quantization_range)      # its FedAvg weight, quantised
    x_k       = quantize(q_ratio_k / quantization_range * Δw_k,   # weighted, clipped to ±clip,
                         clipping_range, quantization_range)      # stochastically rounded
    y_k       = ([q_ratio_k] ++ x_k + private_mask_k ± Σ_j pairwise_mask_kj) mod modulus_range

``y_k`` (first entry: the masked weighting factor, shape (1,); then one array per exchanged
tensor in the wire order of :func:`fedaudit.models.weights.exchanged_names`) is what an
honest-but-curious server holds per client before unmasking; after the unmask stage it holds
only ``Σ_k y_k`` with the masks removed, i.e. the weighted aggregate. The masks are uniform on
``[0, modulus_range)``, so ``y_k`` alone is statistically independent of Δw_k: this is the input a
membership-inference attack on a SecAgg+ server really gets (paper 000, "Membership Inference":
FedMIA under SecAgg+ reports AUC 0.23-0.56, a measurement on what the server receives, which this
view makes reproducible instead of substituting the aggregate for each client).

:class:`CapturingSecAggPlusWorkflow` records ``y_k`` without touching the protocol: it runs
Flower's own ``collect_masked_vectors_stage`` unchanged on a grid whose ``send_and_receive``
keeps a copy of the replies, and hands the decoded integer arrays (keyed by the center named in
the reply's fit metrics) to the strategy, which writes them to the server log
(:mod:`fedaudit.federation.server_log`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import Message
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common import recorddict_compat as compat
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp.grid import Grid


class _CapturingGrid:
    """Delegates to ``grid``; keeps the replies of ``send_and_receive`` (one stage's worth)."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.replies: list[Message] = []

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> list[Message]:
        # a list, not whatever iterable the grid returns: the stage iterates the replies twice
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self.replies.extend(replies)
        return replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


def masked_vectors(replies: Iterable[Message]) -> dict[str, list[np.ndarray]]:
    """Center -> the masked integer arrays of its stage-2 reply, decoded as the workflow does
    (``bytes_to_ndarray`` of ``config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]``).

    The center comes from the fit metrics the reply also carries (``secaggplus_mod`` keeps the
    client's FitRes content and only empties its arrays); failed replies are skipped, as the
    workflow skips them."""
    out: dict[str, list[np.ndarray]] = {}
    for msg in replies:
        if msg.has_error():
            continue
        cfg = msg.content.config_records[RECORD_KEY_CONFIGS]
        raw = cast(list[bytes], cfg[Key.MASKED_PARAMETERS])
        metrics = compat.recorddict_to_fitres(msg.content, keep_input=True).metrics
        center = str(metrics.get("center", f"node{msg.metadata.src_node_id}"))
        if center in out:
            raise ValueError(f"two masked vectors from center {center}")
        out[center] = [bytes_to_ndarray(b) for b in raw]
    return out


class CapturingSecAggPlusWorkflow(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow, unchanged, that also hands each client's masked vector to the
    strategy.

    After the stage, ``context.strategy.record_masked_vectors(server_round, vectors, settings)``
    is called when the strategy has that method (``vectors``: center -> integer arrays as
    received; ``settings``: the protocol's clipping_range, quantization_range, modulus_range and
    max_weight for this round), before the unmask stage calls ``aggregate_fit``."""

    def collect_masked_vectors_stage(self, grid: Grid, context: LegacyContext,
                                     state: WorkflowState) -> bool:
        capturing = _CapturingGrid(grid)
        ok = super().collect_masked_vectors_stage(cast(Grid, capturing), context, state)
        record = getattr(context.strategy, "record_masked_vectors", None)
        if record is not None:
            cfg = context.state.config_records[MAIN_CONFIGS_RECORD]
            settings = {"clipping_range": float(state.clipping_range),
                        "quantization_range": int(state.quantization_range),
                        "modulus_range": int(state.mod_range),
                        "max_weight": float(state.max_weight)}
            record(int(cast(int, cfg[WorkflowKey.CURRENT_ROUND])),
                   masked_vectors(capturing.replies), settings)
        return ok


# --------------------------------------------------------------------------- the defense's hooks


def client_mods(plan: Any) -> list[Any]:
    """Every client wraps its ClientApp in Flower's SecAgg+ client mod."""
    from flwr.client.mod import secaggplus_mod

    return [secaggplus_mod]


def max_examples(plan: Any, max_weight: float | None) -> float:
    """Upper bound on the FedAvg weight a client sends in one round (SecAgg+'s
    ``max_weight``): its enrolment weight (:meth:`~fedaudit.federation.plan.TrainPlan.
    fedavg_weight`; SecAgg+ is a privacy defense), or with ``trust_reported_counts`` the slices
    it can train."""
    from fedaudit.io import read_header

    if max_weight is not None:
        return float(max_weight)
    if plan.private_replies and not plan.trust_reported_counts:
        return float(max(plan.enrolment_weights().values()) + 1)
    cap = plan.local.max_slices_per_volume
    bound = 0
    for c in plan.clients:
        n = 0
        for folder in c.train:
            if cap is not None:
                n += cap
            else:  # at most every slice of the cube in its epoch orientation
                n += max(read_header(Path(folder) / "mr.nii.gz", "MR").GetSize())
        bound = max(bound, n * plan.local.local_epochs)
    return float(bound + 1)


def fit_workflow(plan: Any, params: dict[str, Any]) -> CapturingSecAggPlusWorkflow:
    """The server's fit workflow: Flower's SecAgg+ workflow, which also logs each client's
    masked vector. Flower refuses an integer share count <= 2; the float 1.0 means "all
    clients", which is the default's meaning and lets a two-center federation use SecAgg+."""
    n = len(plan.clients)
    return CapturingSecAggPlusWorkflow(
        num_shares=params["num_shares"] or (n if n > 2 else 1.0),
        reconstruction_threshold=params["reconstruction_threshold"] or n // 2 + 1,
        max_weight=max_examples(plan, params["max_weight"]),
        clipping_range=params["clipping_range"],
        quantization_range=params["quantization_range"])
