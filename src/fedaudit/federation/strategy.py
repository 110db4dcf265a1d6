"""The server's strategy: which clients train, how their updates are combined, what it logs.

A Flower legacy ``Strategy`` (the API that Flower's SecAgg+ workflow drives, DESIGN.md). Clients
send their update Δw_k = w_k − w_global rather than w_k: every aggregation rule here is
translation-equivariant (:mod:`fedaudit.federation.aggregation`), so the new global model
``w_global + rule(Δ_1..Δ_K)`` is the same as ``rule(w_1..w_K)``, while SecAgg+'s clipping of
weighted values to ±8 before quantisation can never bite (BatchNorm running variances can
exceed 8; updates cannot come close). It is also exactly what the honest-but-curious server of
paper 000 ("Membership Inference", Eq. 1) observes.

Determinism: replies are sorted by center before aggregation; every center trains in every round
(full participation, paper 000).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from fedaudit.catalog import catalog, resolve
from fedaudit.federation import server_log
from fedaudit.logs import console
from fedaudit.models.weights import add

log = logging.getLogger(__name__)


class FederationError(RuntimeError):
    """A round could not complete (a client failed or returned something unusable)."""


class AuditStrategy(Strategy):
    """Full-participation strategy with a pluggable aggregation rule and a server log.

    ``on_round_end(round, global_arrays, history)`` is called after each round's validation,
    which is where the training driver checkpoints. ``weights`` (center -> enrolment weight):
    FedAvg's weights under a privacy defense, instead of what the clients report; the log and
    the history then record these. Each round waits up to ``connect_timeout``
    seconds for every center's node to register, then fails naming the centers.
    """

    def __init__(self, *, centers: list[str], names: list[str], initial: list[np.ndarray],
                 aggregation: str, first_round: int, total_rounds: int,
                 log_dir: str | None, log_rounds: str = "all",
                 aggregation_params: dict[str, Any] | None = None,
                 plugins: tuple[str, ...] = (), history: list[dict[str, Any]] | None = None,
                 on_round_end: Callable[[int, list[np.ndarray], list[dict[str, Any]]], None]
                 | None = None, connect_timeout: float = 300.0,
                 weights: dict[str, int] | None = None) -> None:
        super().__init__()
        # the enrolment plan's FedAvg weights (under a privacy defense): used instead of the
        # counts the clients send, which the server cannot check
        self.weights = dict(weights) if weights is not None else None
        self.connect_timeout = connect_timeout
        self.centers = sorted(centers)
        self.names = names
        self.global_arrays = [a.astype(np.float32) for a in initial]
        self.aggregation = aggregation
        spec = catalog(plugins).aggregators.get(aggregation)
        if spec is None:
            raise ValueError(f"unknown aggregation {aggregation!r} (registered: "
                             f"{', '.join(catalog(plugins).aggregators)})")
        self._rule = resolve(spec.function, spec.package)
        self.aggregation_params = dict(aggregation_params or {})
        self.offset = first_round - 1  # Flower counts from 1 in every (resumed) run
        self.total_rounds = total_rounds
        self.log_dir = log_dir
        self.log_rounds = log_rounds
        self.history: list[dict[str, Any]] = list(history or [])
        self.on_round_end = on_round_end
        self.completed_round = self.offset
        self.error: str | None = None
        self._round_rows: dict[str, dict[str, Any]] = {}
        self._t0 = 0.0
        # SecAgg+ only: Flower round -> (center -> masked integer vector, protocol settings),
        # filled by the SecAgg+ defense's CapturingSecAggPlusWorkflow before aggregate_fit runs
        self._masked: dict[int, tuple[dict[str, list[np.ndarray]], dict[str, Any]]] = {}

    # -- helpers
    def _round(self, server_round: int) -> int:
        return self.offset + server_round

    def _fail(self, msg: str) -> None:
        self.error = msg
        log.error(msg)
        raise FederationError(msg)

    def _all_clients(self, client_manager: ClientManager) -> list[ClientProxy]:
        # Nodes register asynchronously (the Ray engine starts them after the ServerApp),
        # and Flower's wrapped `all()` refreshes the node list on every call: poll it.
        deadline = time.monotonic() + self.connect_timeout
        clients = list(client_manager.all().values())
        while len(clients) < len(self.centers) and time.monotonic() < deadline:
            time.sleep(0.2)
            clients = list(client_manager.all().values())
        if len(clients) != len(self.centers):
            self._fail(f"expected {len(self.centers)} clients ({', '.join(self.centers)}), "
                       f"{len(clients)} connected after {self.connect_timeout:.0f} s")
        return sorted(clients, key=lambda c: int(c.cid))

    def _silent(self, results: list[tuple[ClientProxy, Any]]) -> str:
        """The centers without a reply, for a failure message: a failed reply (a client's
        exception, a deployed SuperNode that stopped answering) names no center itself."""
        replied = {str(r.metrics.get("center")) for _, r in results}
        missing = [c for c in self.centers if c not in replied]
        return f" (no reply from center {', '.join(missing)})" if missing else ""

    def _should_log(self, rnd: int) -> bool:
        return self.log_dir is not None and (self.log_rounds == "all"
                                             or rnd == self.total_rounds)

    def record_masked_vectors(self, server_round: int, vectors: dict[str, list[np.ndarray]],
                              settings: dict[str, Any]) -> None:
        """What the SecAgg+ server received per client in the masked-vector stage
        (:mod:`fedaudit.defenses.secagg.workflow`); logged with this round by ``aggregate_fit``."""
        self._masked = {server_round: (vectors, settings)}  # only the current round is kept

    # -- Strategy API
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return ndarrays_to_parameters(self.global_arrays)

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        rnd = self._round(server_round)
        if rnd - 1 != self.completed_round:
            self._fail(f"round {rnd - 1} produced no aggregate (a client or the secure "
                       "aggregation protocol failed; see the log above)")
        self._t0 = time.perf_counter()
        self.global_arrays = [np.asarray(a, np.float32) for a in parameters_to_ndarrays(parameters)]
        ins = FitIns(parameters, {"round": rnd})
        return [(c, ins) for c in self._all_clients(client_manager)]

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[Any]) -> tuple[Parameters | None, dict[str, Scalar]]:
        rnd = self._round(server_round)
        if failures:
            reasons = "; ".join(str(f if isinstance(f, BaseException) else f[1].status)
                                for f in failures)
            self._fail(f"round {rnd}: {len(failures)} client(s) failed"
                       f"{self._silent(results)}: {reasons}")
        got = sorted((str(r.metrics.get("center")), r) for _, r in results)
        centers = [c for c, _ in got]
        if centers != self.centers:
            self._fail(f"round {rnd}: replies from {centers}, expected {self.centers}")
        received = [{"center": c,
                     "num_examples": (self.weights[c] if self.weights is not None
                                      else r.num_examples),
                     "metrics": {k: v for k, v in r.metrics.items() if k != "center"},
                     "arrays": [np.asarray(a, np.float32)  # no copy when already float32
                                for a in parameters_to_ndarrays(r.parameters)]}
                    for c, r in got]
        for item in received:
            if any(not np.all(np.isfinite(a)) for a in item["arrays"]):
                self._fail(f"round {rnd}: client {item['center']} sent non-finite values")
        masked, secagg = self._masked.pop(server_round, (None, None))
        if masked is not None and sorted(masked) != self.centers:
            self._fail(f"round {rnd}: masked vectors from {sorted(masked)}, expected "
                       f"{self.centers}")
        if self._should_log(rnd):
            server_log.write_round(self.log_dir, rnd, self.names, self.global_arrays, received,
                                   masked=masked, secagg=secagg)
        update, extra = self._rule([it["arrays"] for it in received],
                                   [it["num_examples"] for it in received],
                                   **self.aggregation_params)
        if "krum_selected" in extra:
            extra = {"krum_selected": centers[int(extra["krum_selected"])]}
        self.global_arrays = add(self.global_arrays, update)
        self._round_rows = {
            it["center"]: {"round": rnd, "center": it["center"],
                           "num_examples": it["num_examples"], **it["metrics"], **extra}
            for it in received}
        self.completed_round = rnd
        return ndarrays_to_parameters(self.global_arrays), {}

    def configure_evaluate(self, server_round: int, parameters: Parameters,
                           client_manager: ClientManager
                           ) -> list[tuple[ClientProxy, EvaluateIns]]:
        ins = EvaluateIns(parameters, {"round": self._round(server_round)})
        return [(c, ins) for c in self._all_clients(client_manager)]

    def aggregate_evaluate(self, server_round: int, results: list[tuple[ClientProxy, EvaluateRes]],
                           failures: list[Any]) -> tuple[float | None, dict[str, Scalar]]:
        rnd = self._round(server_round)
        if failures:
            reasons = "; ".join(str(f if isinstance(f, BaseException) else f[1].status)
                                for f in failures)
            self._fail(f"round {rnd}: {len(failures)} client(s) failed validation"
                       f"{self._silent(results)}: {reasons}")
        for _, r in results:
            c = str(r.metrics.get("center"))
            row = self._round_rows.setdefault(c, {"round": rnd, "center": c})
            row.update({k: v for k, v in r.metrics.items() if k != "center"})
        seconds = time.perf_counter() - self._t0
        rows = [dict(self._round_rows[c], round_seconds=seconds) for c in sorted(self._round_rows)]
        self.history.extend(rows)
        summary = ", ".join(
            f"{r['center']}: loss {r.get('train_loss', float('nan')):.4f} "
            + (f"val accuracy {r['val_acc']:.3f}" if "val_acc" in r  # a classifier federation
               else f"val MAE {r.get('val_mae', float('nan')):.1f} HU") for r in rows)
        log.info("round %d/%d done in %.1f s — %s", rnd, self.total_rounds, seconds, summary)
        console(f"round {rnd}/{self.total_rounds} done in {seconds:.1f} s")
        if self.on_round_end is not None:
            self.on_round_end(rnd, self.global_arrays, self.history)
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters
                 ) -> tuple[float, dict[str, Scalar]] | None:
        return None  # the server holds no data
