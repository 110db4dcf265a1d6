"""The trap-weight attack's rule steps (called through the catalog by
``workflow/scripts/step.py``): ``slices`` (2-D sweeps over initialisation, federation size and
batch size, one training mode), ``volumes`` (3-D reassembly), ``defenses`` (architecture check,
stealthy server, weight audit) and the two figures.

Attacker side: the malicious server's own global model of the attacked round (its log) and what
the clients return. Evaluator side: the slices each client really trained on
(:func:`.harness.truth_slices`) and the Hungarian SSIM matching (:mod:`.matching`)."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from fedaudit.archives import load_npz
from fedaudit.atomic import save_npz, write_csv
from fedaudit.attacks.trap_weights.harness import (
    run_trap_round,
    truth_slices,
    with_clients,
)
from fedaudit.attacks.trap_weights.imprint import reconstruct
from fedaudit.attacks.trap_weights.matching import match_reconstructions
from fedaudit.attacks.trap_weights.server import TrapSettings
from fedaudit.attacks.trap_weights.volumes3d import score_volume
from fedaudit.catalog import Job
from fedaudit.defenses.weight_audit.verdict import is_alarm
from fedaudit.federation.plan import TrainPlan, attacked_plan
from fedaudit.federation.server_log import load_round, resolve_rounds
from fedaudit.federation.strategy import FederationError
from fedaudit.io import read_json
from fedaudit.preprocess.outliers import read_excluded


def scenario_plan(job: Job) -> TrainPlan:
    """The attacked scenario's federation, as its train rule built it."""
    return attacked_plan(job.params, job.config, [read_json(f) for f in job.input.splits],
                         read_excluded(job.input.qc_flags))


def server_state(server_log: str, which: Any) -> tuple[int, list[str], list[np.ndarray]]:
    """The malicious server's own global model of the attacked round (what it was about to
    send): ``(round, names, arrays)``."""
    rnd = resolve_rounds(server_log, which)[-1]
    logged = load_round(server_log, rnd)
    names = list(logged.global_arrays)
    return rnd, names, [logged.global_arrays[n] for n in names]


def _slice_shape(plan: TrainPlan) -> tuple[int, int, int]:
    from fedaudit.attacks.trap_weights.server import plan_slice_shape

    return (1, *plan_slice_shape(plan))


def score_capture(plan: TrainPlan, server: Any, rnd: int, settings: TrapSettings,
                  threshold: float, local_extra: dict[str, Any] | None = None,
                  truths: dict[str, np.ndarray] | None = None,
                  null_memo: dict[tuple[bytes, bytes], int] | None = None
                  ) -> list[dict[str, Any]]:
    """One row per update the server holds (per client, or the aggregate under SecAgg+):
    reconstructions from the inserted layer, matched to the slices the clients trained on
    (``truths``: :func:`round_truths`, computed here when not given).

    Beside every count, the null (``null_recovered``): real MR slices of *other* patients (the
    next client's round) offered as the reconstructions of a client's slices. Neighbouring
    anatomy can pass SSIM 0.9; what passes here is what the criterion grants without any leak.
    It depends on the slices only, so the aggregate's null is the sum of its clients', and
    ``null_memo`` (keyed by the two slice stacks' digests) reuses it between settings that
    train on the same slices."""
    cap = server.captures[rnd]
    h, w = _slice_shape(plan)[1:]
    if truths is None:
        truths = round_truths(plan, rnd, settings, local_extra)
    memo = {} if null_memo is None else null_memo
    order = list(truths)
    null = {c: (_null_count(truths[order[(i + 1) % len(order)]], truths[c], threshold, memo)
                if len(order) > 1 else np.nan) for i, c in enumerate(order)}
    rows = []
    for who, update in cap.updates.items():
        t0 = time.perf_counter()
        names = list(update)
        recon, _ = reconstruct(update[names[0]], update[names[1]], settings.init)
        seconds = time.perf_counter() - t0
        centers = plan.centers if who == "aggregate" else [who]
        truth = np.concatenate([truths[c] for c in centers])
        # the server knows its preprocessing's range: MR in [0, 1]
        recon = np.clip(recon.reshape(-1, h, w), 0.0, 1.0) if recon.size else \
            np.zeros((0, h, w), np.float32)
        match = match_reconstructions(recon, truth, threshold=threshold)
        rows.append({"client": who, "center": who.split(".")[0] if who != "aggregate"
                     else "all", "view": "aggregate" if who == "aggregate" else "client",
                     "candidates": int(len(recon)), "reconstruct_seconds": seconds,
                     **match.summary(), "null_recovered": float(sum(null[c] for c in centers)),
                     "_match": match, "_recon": recon, "_truth": truth})
    return rows


def round_truths(plan: TrainPlan, rnd: int, settings: TrapSettings,
                 local_extra: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Evaluator side: per client, the slices it trains on in the trap round."""
    return {c: truth_slices(plan, c, rnd, settings, local_extra) for c in plan.centers}


def _digest(a: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(a).tobytes() + str(a.shape).encode(),
                           digest_size=16).digest()


def _null_count(others: np.ndarray, truth: np.ndarray, threshold: float,
                memo: dict[tuple[bytes, bytes], int]) -> int:
    key = (_digest(others), _digest(truth))
    if key not in memo:
        memo[key] = int(match_reconstructions(others, truth, threshold=threshold)
                        .recovered.sum())
    return memo[key]


def round_key(plan: TrainPlan, batch: int, truths: dict[str, np.ndarray]) -> tuple:
    """What decides a sweep round's computation besides the initialisation: the clients and,
    per client, the batch it trains in. A client trains its round's slices in batches of
    ``batch`` (one step of the first ``batch`` in gradient mode, all of them in local mode), so
    two batch sizes at which every client's data fits the same batches -- both at least its
    slice count -- run the same round: same server, seeds, slices and updates."""
    return (tuple(plan.centers), tuple(min(batch, len(t)) for t in truths.values()))


def slices(job: Job, log: logging.Logger) -> None:
    """Rule trap_weights: paper 002 Table 1's sweep (batch size × federation size) for every
    initialisation, in one training mode (``gradient``: one SGD step; ``local``: the configured
    local training)."""
    p, wc = job.params, job.wildcards
    base_plan = scenario_plan(job)
    rnd, names, arrays = server_state(job.input.server_log, p.trap["round"])
    rows, example = [], {}
    null_memo: dict[tuple[bytes, bytes], int] = {}
    truth_memo: dict[tuple, dict[str, np.ndarray]] = {}
    for init in p.trap["inits"]:
        settings = TrapSettings.from_config(p.trap, init=init, mode=wc.trap_mode)
        computed: dict[tuple, tuple[int, list[dict[str, Any]]]] = {}
        for n_clients in p.trap["clients"]:
            for batch in p.trap["batch_sizes"]:
                plan = with_clients(base_plan, n_clients, batch)
                # the evaluator's truths depend on the clients and the batch, not the init
                tkey = (n_clients, batch)
                if tkey not in truth_memo:
                    truth_memo[tkey] = round_truths(plan, rnd, settings)
                truths = truth_memo[tkey]
                key = round_key(plan, batch, truths)
                if key in computed:
                    # the same round as at a smaller batch (round_key): shown, not run again
                    first, done = computed[key]
                    rows += [{**r, "batch_size": batch, "computed_at_batch": first}
                             for r in done]
                    log.info("%s init %s, %d clients, batch %d: the round of batch %d (every "
                             "client's data fits the same batches)", wc.trap_mode, init,
                             len(plan.clients), batch, first)
                    continue
                t0 = time.perf_counter()
                server, _ = run_trap_round(plan, names, arrays, rnd, settings,
                                           _slice_shape(plan))
                seconds = time.perf_counter() - t0
                scored = score_capture(plan, server, rnd, settings, p.trap["threshold"],
                                       truths=truths, null_memo=null_memo)
                done = [{"scenario": wc.scenario, "mode": wc.trap_mode, "init": init,
                         "round": rnd, "clients": len(plan.clients), "batch_size": batch,
                         "computed_at_batch": batch, "setting": "attack",
                         "round_seconds": seconds,
                         **{k: v for k, v in r.items() if not k.startswith("_")}}
                        for r in scored]
                computed[key] = (batch, done)
                rows += done
                if not example:  # the figure's: first init, federation and batch size
                    example = {f"{r['client']}__{k}": v for r in scored
                               for k, v in (("truth", r["_truth"]), ("recon", r["_recon"]),
                                            ("index", r["_match"].recon_index),
                                            ("ssim", r["_match"].ssim))}
                log.info("%s init %s, %d clients, batch %d: %s (%.1f s)", wc.trap_mode, init,
                         len(plan.clients), batch,
                         ", ".join(f"{r['client']} {r['recovered']}/{r['attacked']}"
                                   for r in done), seconds)
    if wc.trap_mode == "gradient":
        rows += positive_control(base_plan, rnd, p.trap, wc.scenario, log)
    write_csv(pd.DataFrame(rows), job.output.table, index=False)
    save_npz(job.output.examples, compressed=True, **example)


def positive_control(plan: TrainPlan, rnd: int, trap: dict[str, Any], scenario: str,
                     log: logging.Logger) -> list[dict[str, Any]]:
    """Issue 14's positive control: the untrained UNet (the federation's initial weights) at
    batch 1, each client's update seen alone (no SecAgg+: the setting where the closed form is
    exact), so every slice must come back (SSIM ≈ 1); rows with ``setting == "control"``."""
    from dataclasses import replace

    from fedaudit.federation.apps import initial_model
    from fedaudit.models.weights import exchanged_names, get_arrays

    model = initial_model(plan)
    names, arrays = exchanged_names(model), get_arrays(model)
    rows = []
    plain = replace(plan, scenario=replace(plan.scenario, defenses=()))
    for init in trap["inits"]:
        settings = TrapSettings.from_config(trap, init=init, mode="gradient")
        one = with_clients(plain, None, 1)
        server, _ = run_trap_round(one, names, arrays, rnd, settings, _slice_shape(one))
        for r in score_capture(one, server, rnd, settings, trap["threshold"]):
            rows.append({"scenario": scenario, "mode": "gradient", "init": init, "round": rnd,
                         "clients": len(one.clients), "batch_size": 1, "setting": "control",
                         **{k: v for k, v in r.items() if not k.startswith("_")}})
        log.info("positive control (untrained UNet, batch 1, %s): %s", init,
                 ", ".join(f"{r['client']} SSIM {r['mean_ssim_all']:.4f}" for r in rows
                           if r["init"] == init))
    return rows


def volumes(job: Job, log: logging.Logger) -> None:
    """Rule trap_weights_volumes: paper 002 Table 2 -- per client, its first training volume's
    head-containing axial slices sent in order, ``B`` at a time, by the server-supplied
    preprocessing (one trap round per slab, the server engaging that client alone, as paper
    002's "target client"), each slab reconstructed and matched; the recovered slices placed
    back by their index (oracle) and ordered without it (non-oracle)."""
    from dataclasses import replace

    from fedaudit.attacks.trap_weights.volumes3d import reassemble_oracle
    from fedaudit.data.slices import axial_slices
    from fedaudit.federation.client import SCTClient

    p, wc = job.params, job.wildcards
    plan = scenario_plan(job)
    rnd, names, arrays = server_state(job.input.server_log, p.trap["round"])
    settings = TrapSettings.from_config(p.trap, init=p.trap["inits"][0], mode="gradient")
    rows, example = [], {}
    for center in plan.centers:
        alone = replace(plan, clients=(plan.client(center),))
        volume = SCTClient(alone, center)._train_volumes()[0]
        true_volume = axial_slices(volume, None)[0][:, 0].numpy()
        depth = int(true_volume.shape[0])
        for batch in p.trap["volumes"]["batch_sizes"]:
            recovered: dict[int, np.ndarray] = {}
            t0 = time.perf_counter()
            for first in range(0, depth, batch):
                extra = {"slab": [0, first, min(first + batch, depth)]}
                server, _ = run_trap_round(alone, names, arrays, rnd, settings,
                                           _slice_shape(alone), extra)
                (r,) = score_capture(alone, server, rnd, settings, p.trap["threshold"], extra)
                m = r["_match"]
                for i in np.flatnonzero(m.recovered):
                    recovered[first + int(i)] = r["_recon"][m.recon_index[i]]
            seconds = time.perf_counter() - t0
            score = score_volume(true_volume, recovered, seed=p.seed)
            rows.append({"scenario": wc.scenario, "center": center, "volume": volume.name,
                         "batch_size": batch, "rounds": -(-depth // batch), "seconds": seconds,
                         **score})
            log.info("%s %s batch %d: %d/%d slices recovered, 3-D SSIM over them %.3f; "
                     "volume SSIM with the oracle %.3f, without %.3f", center, volume.name,
                     batch, score["slices_recovered"], depth, score["ssim_3d_recovered"],
                     score["ssim_3d_oracle"], score["ssim_3d_no_oracle"])
            if not example:  # the figure's: the first center at the first batch size
                vol, mask = reassemble_oracle(recovered, depth, true_volume.shape[1:])
                example = {"truth": true_volume, "oracle": vol, "recovered": mask,
                           "center": np.array(center), "batch_size": np.array(batch)}
    write_csv(pd.DataFrame(rows), job.output.table, index=False)
    save_npz(job.output.example, compressed=True, **example)


def defenses(job: Job, log: logging.Logger) -> None:
    """Rule trap_weights_defenses: the two client-side defenses against both malicious
    servers, each in a federation that first runs one honest round (so the audit has the model
    before the trap): the architecture check (refuses the round?) and the weight audit (which
    clients raise an alarm?), and what the server recovers when nothing refuses."""
    from dataclasses import replace

    p, wc = job.params, job.wildcards
    plan = scenario_plan(job)
    rnd, names, arrays = server_state(job.input.server_log, p.trap["round"])
    front = TrapSettings.from_config(p.trap, init=p.trap["inits"][0], mode="gradient")
    rows = []
    for server_kind, settings in (("front", front), ("stealth", replace(front,
                                                                       placement="stealth"))):
        for defense, entry in (("architecture_check", {"name": "architecture_check"}),
                               ("weight_audit", {"name": "weight_audit", **p.audit})):
            extra = () if plan.scenario.defense(defense) else (entry,)
            checked = with_clients(plan, None, None, extra)
            row: dict[str, Any] = {"scenario": wc.scenario, "server": server_kind,
                                   "defense": defense, "round": rnd + 1,
                                   "clients": len(checked.clients)}
            try:
                server, _ = run_trap_round(checked, names, arrays, rnd, settings,
                                           _slice_shape(checked), honest_before=True)
            except FederationError as err:
                row.update({"round_refused": True, "alarms": len(checked.clients),
                            "message": str(err).splitlines()[0][:600],
                            "recovered": 0, "attacked": np.nan})
                rows.append(row)
                log.info("%s server vs %s: round refused: %s", server_kind, defense,
                         row["message"])
                continue
            cap = server.captures[rnd + 1]
            threshold = float(p.audit["threshold"])
            alarmed = {c: m for c, m in cap.metrics.items()
                       if is_alarm(str(m.get("audit_flags", "")),
                                   float(m.get("audit_score", np.nan)), threshold)}
            reasons = sorted({str(m.get("audit_reason")) for m in alarmed.values()})
            audited = defense == "weight_audit"
            row.update({"round_refused": False,
                        "alarms": len(alarmed) if audited else 0,
                        "message": "; ".join(reasons)[:600] if audited else
                        "accepted: the definition and tensor layout match the enrolment"})
            if server_kind == "front":
                scored = score_capture(checked, server, rnd + 1, settings, p.trap["threshold"])
                row.update({"recovered": sum(r["recovered"] for r in scored),
                            "attacked": sum(r["attacked"] for r in scored)})
            else:
                # the ratio of a convolution's weight and bias updates is a weighted mean of
                # 3x3 input patches, never a whole slice
                row.update({"recovered": 0, "attacked": np.nan})
            rows.append(row)
            log.info("%s server vs %s: accepted, %s alarm(s), %s/%s slices recovered",
                     server_kind, defense, row["alarms"], row["recovered"], row["attacked"])
    write_csv(pd.DataFrame(rows), job.output.table, index=False)


def figure(job: Job, log: logging.Logger) -> None:
    """Rule figure_trap_weights: paper 002 Figs. 2-3 for one scenario."""
    from fedaudit.attacks.trap_weights.figures import slices_figure

    (examples_file,) = job.input.examples
    examples = load_npz(examples_file)
    volume = load_npz(job.input.volume[0]) if job.input.volume else None
    threshold = job.params.threshold
    slices_figure(examples, job.output.slices,
                  f"Trap-weight reconstruction, scenario {job.wildcards.scenario} (first "
                  "setting of the sweep)", threshold, volume)
    log.info("figure %s", job.output.slices)
