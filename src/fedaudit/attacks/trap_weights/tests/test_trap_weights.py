"""The malicious server of paper 002: the closed form, the trap round through the real clients,
the clients' architecture check and weight audit, and the honest server log kept clean."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from fl_study import make_study, tiny_plan
from skimage.metrics import structural_similarity

from conftest import REPO
from fedaudit.attacks.trap_weights.harness import (
    run_trap_round,
    split_clients,
    truth_slices,
    with_clients,
)
from fedaudit.attacks.trap_weights.imprint import binning_init, reconstruct, trap_init
from fedaudit.attacks.trap_weights.matching import match_reconstructions
from fedaudit.attacks.trap_weights.report import slices_table, trap_finding
from fedaudit.attacks.trap_weights.server import TrapSettings, malicious_model
from fedaudit.defenses.architecture_check.check import differences
from fedaudit.defenses.weight_audit.verdict import audit, trap_signature
from fedaudit.federation.apps import initial_model
from fedaudit.federation.run import train_federation
from fedaudit.federation.strategy import FederationError
from fedaudit.models import definition
from fedaudit.models.front import LinearFront
from fedaudit.models.weights import exchanged_names, get_arrays
from fedaudit.report.intervals import clopper_pearson
from fedaudit.scenarios import Scenario


def _front_gradient(front: LinearFront, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """∂L/∂W, ∂L/∂b of the front block for a batch through a fixed random downstream map."""
    torch.manual_seed(0)
    head = torch.nn.Conv2d(1, 1, 3, padding=1)
    front.zero_grad()
    loss = head(front(x)).abs().mean()
    loss.backward()
    return front.linear.weight.grad.numpy().copy(), front.linear.bias.grad.numpy().copy()


def test_closed_form_recovers_two_samples_with_disjoint_active_neurons_exactly() -> None:
    d = 16
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, :2] = torch.rand(2, 4) + 0.1   # sample 0 lives in the top half
    x[1, 0, 2:] = torch.rand(2, 4) + 0.1   # sample 1 in the bottom half
    front = LinearFront(d, 3)
    with torch.no_grad():
        top = torch.cat([torch.ones(8), -torch.ones(8)])
        front.linear.weight.copy_(torch.stack([top, -top, -torch.ones(d)]))  # neuron 2: never
        front.linear.bias.zero_()
        front.back.weight.copy_(torch.randn(d, 3) * 0.1)
    dw, db = _front_gradient(front, x)
    recon, neurons = reconstruct(dw, db, "trap")
    assert list(neurons) == [0, 1]  # the neuron no sample activates gives nothing
    np.testing.assert_allclose(recon[0], x[0].flatten().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(recon[1], x[1].flatten().numpy(), rtol=1e-5, atol=1e-6)


def test_binning_isolates_each_sample_by_differences_of_consecutive_neurons() -> None:
    """Robbing the Fed's bins: samples of distinct mean intensity, one per bin, all exact."""
    gen = torch.Generator().manual_seed(1)
    x = torch.stack([torch.full((1, 4, 4), v) + 0.05 * torch.rand(1, 4, 4, generator=gen)
                     for v in (0.1, 0.4, 0.8)])
    front = LinearFront(16, 32)
    binning_init(front, mean=0.45, std=0.3, back_std=0.1, generator=gen)
    dw, db = _front_gradient(front, x)
    recon, _ = reconstruct(dw, db, "binning")
    truth = x.flatten(1).numpy()
    best = [min(np.abs(recon - t).max(axis=1)) for t in truth]
    assert max(best) < 1e-4


def test_trap_weights_make_activation_rare_for_non_negative_inputs() -> None:
    """Paper 002 Eq. 5: scaling the positive weights down makes a neuron fire for few
    images; scale 1 (no trap) fires for about half. For x ~ U(0, 1)^d the pre-activation is
    about normal with mean d·E[w] = d·0.4·(s − 1) and sd ≈ sqrt(d·E[w²]/3), so the expected
    rates are Φ(−0.58) = 0.28 at s = 0.9 and Φ(−2.0) = 0.02 at s = 0.7."""
    x = torch.rand(64, 256, generator=torch.Generator().manual_seed(3))
    rates = {}
    for scale in (1.0, 0.9, 0.7):
        front = LinearFront(256, 400)
        trap_init(front, positive_scale=scale, back_std=1e-3,
                  generator=torch.Generator().manual_seed(2))
        rates[scale] = float((front.linear(x) > 0).float().mean())
    assert 0.4 < rates[1.0] < 0.6
    assert 0.2 < rates[0.9] < 0.36
    assert rates[0.7] < 0.05


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("trap")
    clients = make_study(root / "data", {"A": 2, "B": 2, "C": 3}, size=32)
    plan = tiny_plan(clients, root / "out")
    model = initial_model(plan)
    return plan, exchanged_names(model), get_arrays(model)


def test_positive_control_untrained_unet_batch_one_gives_ssim_one(study) -> None:
    plan, names, arrays = study
    one = with_clients(plan, None, 1)
    settings = TrapSettings(neurons=128)
    server, errors = run_trap_round(one, names, arrays, 1, settings, (1, 32, 32))
    assert not errors
    cap = server.captures[1]
    assert sorted(cap.updates) == ["A", "B", "C"] and not cap.aggregate_only
    for center, update in cap.updates.items():
        recon, _ = reconstruct(update["front.linear.weight"], update["front.linear.bias"],
                               "trap")
        truth = truth_slices(one, center, 1, settings)
        assert truth.shape == (1, 32, 32)
        best = max(structural_similarity(truth[0], np.clip(r.reshape(32, 32), 0, 1),
                                         data_range=1.0) for r in recon)
        assert best > 0.999, center


def test_a_batch_of_eight_is_recovered_and_matches_the_slices_the_client_trained_on(
        study) -> None:
    plan, names, arrays = study
    batch = with_clients(plan, None, 8)
    settings = TrapSettings(neurons=256)
    server, _ = run_trap_round(batch, names, arrays, 1, settings, (1, 32, 32))
    update = server.captures[1].updates["C"]
    recon, _ = reconstruct(update["front.linear.weight"], update["front.linear.bias"], "trap")
    truth = truth_slices(batch, "C", 1, settings)
    assert truth.shape[0] == 8 == server.captures[1].num_examples["C"]
    match = match_reconstructions(np.clip(recon.reshape(-1, 32, 32), 0, 1), truth)
    assert match.summary()["recovered"] >= 4  # measured 8/8 on the demo at batch 8


def test_under_secagg_the_server_only_gets_the_sum_and_slices_still_leak(study) -> None:
    plan, names, arrays = study
    secagg = Scenario("secagg", defenses=({"name": "secagg", "num_shares": None,
                                           "reconstruction_threshold": None,
                                           "max_weight": None, "clipping_range": 8.0,
                                           "quantization_range": 4194304},))
    p = with_clients(replace(plan, scenario=secagg), None, 2)
    settings = TrapSettings(neurons=256)
    server, _ = run_trap_round(p, names, arrays, 1, settings, (1, 32, 32))
    cap = server.captures[1]
    assert cap.aggregate_only and list(cap.updates) == ["aggregate"]
    recon, _ = reconstruct(cap.updates["aggregate"]["front.linear.weight"],
                           cap.updates["aggregate"]["front.linear.bias"], "trap")
    truth = np.concatenate([truth_slices(p, c, 1, settings) for c in p.centers])
    assert match_reconstructions(np.clip(recon.reshape(-1, 32, 32), 0, 1),
                                 truth).summary()["recovered"] >= 1


def test_architecture_check_refuses_an_extra_layer_and_accepts_the_agreed_model(study) -> None:
    plan, names, arrays = study
    agreed = definition.agreed(2)
    layout = definition.layout(definition.build(agreed))
    assert differences(agreed, layout, agreed, [s for _, s in layout]) == []
    defn, _, sent = malicious_model(names, arrays, 2, (1, 32, 32), TrapSettings(neurons=8), 0)
    found = differences(agreed, layout, defn, [a.shape for a in sent])
    assert any("front.linear.weight [8, 1024]" in f for f in found), found
    checked = with_clients(plan, None, 4, ({"name": "architecture_check"},))
    with pytest.raises(FederationError, match=r"architecture check.*front\.linear\.weight"):
        run_trap_round(checked, names, arrays, 1, TrapSettings(neurons=8), (1, 32, 32))
    # the stealthy server keeps the architecture: the check lets it through
    stealth = TrapSettings(neurons=8, placement="stealth")
    server, _ = run_trap_round(checked, names, arrays, 1, stealth, (1, 32, 32))
    assert 1 in server.captures


def test_weight_audit_flags_new_layers_trap_signatures_and_large_changes() -> None:
    rng = np.random.default_rng(0)
    prev = {"conv.weight": rng.normal(size=(4, 1, 3, 3)), "conv.bias": rng.normal(size=4)}
    honest = {k: v + 0.01 * rng.normal(size=v.shape) for k, v in prev.items()}
    ok = audit(prev, honest, threshold=0.5)
    assert not ok["alarm"] and 0 < ok["score"] < 0.05
    assert audit(None, honest, 0.5)["alarm"] is False  # nothing to compare with yet
    new = {"front.linear.weight": rng.normal(size=(3, 9)), **honest}
    assert "new tensors: front.linear.weight" in audit(prev, new, 0.5)["reason"]
    # an inserted 64x64 trap layer carries the signature; a symmetric draw does not
    front = LinearFront(4096, 16)
    trap_init(front, positive_scale=0.9, back_std=1e-3, generator=torch.Generator())
    assert trap_signature(front.linear.weight.detach().numpy(), np.zeros(16))
    symmetric = rng.normal(size=(16, 4096))
    assert not trap_signature(symmetric, np.zeros(16))
    assert not trap_signature(front.linear.weight.detach().numpy(), np.full(16, 1e-3))
    # planted in the 3x3 convolution (the stealthy server) only the change test sees it
    small = LinearFront(9, 4)
    trap_init(small, positive_scale=0.9, back_std=1e-3, generator=torch.Generator())
    trapped = {"conv.weight": small.linear.weight.detach().numpy().reshape(4, 1, 3, 3),
               "conv.bias": np.zeros(4)}
    verdict = audit(prev, trapped, 0.5)
    assert verdict["alarm"] and "conv.weight changed by" in verdict["reason"]


def test_a_trap_round_never_enters_the_honest_server_log(tmp_path: Path) -> None:
    """A scenario trained with ``server: trap_weights``: round 2 is the trap round; the honest
    log holds round 1 only, the capture is marked malicious, and the final model is the
    global model after round 1."""
    clients = make_study(tmp_path / "data", {"A": 1, "B": 1}, size=32)
    plan = tiny_plan(clients, tmp_path / "out", Scenario("trapped", server="trap_weights"),
                     log_rounds="all")
    train_federation(plan)
    log = tmp_path / "out" / "server_log"
    assert sorted(p.name for p in log.iterdir()) == ["model.json", "round_001", "rounds.json"]
    assert json.loads((log / "rounds.json").read_text()) == {"rounds": [1]}
    # the log's model is the enrolled UNet, not the trap round's fronted one
    assert json.loads((log / "model.json").read_text()) == {"arch": "unet2d", "base": 2}
    meta = json.loads((tmp_path / "out" / "malicious" / "round_002" / "round.json").read_text())
    assert meta["malicious"] is True and meta["definition"]["front"]["kind"] == "linear"
    assert sorted(meta["num_examples"]) == ["A", "B"]


def test_split_clients_keeps_whole_patients_and_says_when_it_cannot() -> None:
    from fedaudit.federation.plan import ClientData

    clients = (ClientData("A", ("a1",)), ClientData("D", ("d1", "d2", "d3", "d4", "d5")))
    six = split_clients(clients, 4)
    assert [c.center for c in six] == ["A", "D.1", "D.2", "D.3"]
    assert sorted(p for c in six for p in c.train) == ["a1", "d1", "d2", "d3", "d4", "d5"]
    with pytest.raises(ValueError, match="only 6 training patients"):
        split_clients(clients, 7)


def test_table_and_verdict_read_the_fixed_setting_against_its_lower_bound() -> None:
    lo, hi = clopper_pearson(8, 8)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 8), rel=1e-9)  # closed form
    rows = []
    for batch, rec in ((8, 30), (128, 40)):
        for client in ("A", "B"):
            rows.append({"scenario": "baseline", "mode": "gradient", "init": "trap",
                         "clients": 2, "batch_size": batch, "setting": "attack",
                         "view": "client", "client": client, "recovered": rec // 2,
                         "attacked": 16 if batch == 8 else 128, "null_recovered": 0,
                         "mean_ssim_recovered": 0.99, "mean_mse_recovered": 1e-6,
                         "mean_psnr_recovered": 60.0})
    rows.append({**rows[0], "setting": "control", "batch_size": 1, "recovered": 1,
                 "attacked": 1})
    import pandas as pd

    table = slices_table(pd.DataFrame(rows))
    shown = table.blocks[0].frame
    assert shown.loc[0, "Recovered"] == "30/32" and shown.loc[1, "Recovered"] == "40/256"
    settings = {"scenario": "baseline", "mode": "gradient", "init": "trap", "threshold": 0.9}
    finding = trap_finding(table.data, settings)
    assert finding.level == "high" and "30/32" in finding.sentence  # batch 8, not the best
    # as many slices as the null grants: no share beyond it; the control recovered its slice,
    # so the model resists at this budget, with the control as its power
    raw = pd.DataFrame(rows)
    attack = raw["setting"] == "attack"
    held = trap_finding(slices_table(raw.assign(null_recovered=raw["recovered"].where(
        attack, 0))).data, settings)
    assert held.level == "resists at this budget" and "control" in held.power, held.text
    # a few slices beyond a null of 0 are a leak: moderate, however few
    few = trap_finding(slices_table(raw.assign(recovered=raw["recovered"].where(
        ~attack, 2))).data, settings)
    assert few.level == "moderate" and "4/32" in few.sentence, few.text


def test_the_same_seed_gives_the_same_trap_round(study) -> None:
    plan, names, arrays = study
    p = with_clients(plan, None, 4)
    caps = [run_trap_round(p, names, arrays, 1, TrapSettings(neurons=32), (1, 32, 32))[0]
            .captures[1] for _ in range(2)]
    for who in caps[0].updates:
        for name, a in caps[0].updates[who].items():
            np.testing.assert_array_equal(a, caps[1].updates[who][name])


@pytest.mark.parametrize("mode", ["gradient", "local"])
def test_batch_sizes_with_the_same_round_key_run_the_same_round(study, mode: str) -> None:
    """The sweep runs a batch size once when it trains every client's slices in the same
    batches as a smaller one (steps.round_key): checked against running both rounds."""
    from fedaudit.attacks.trap_weights.steps import round_key, round_truths

    plan, names, arrays = study
    settings = TrapSettings(neurons=32, mode=mode)
    most = max(len(t) for t in round_truths(with_clients(plan, None, 1000), 1,
                                            settings).values())
    caps, keys = {}, {}
    for b in (2, most, most + 7):
        p = with_clients(plan, None, b)
        keys[b] = round_key(p, b, round_truths(p, 1, settings))
        caps[b] = run_trap_round(p, names, arrays, 1, settings, (1, 32, 32))[0].captures[1]
    assert keys[most] == keys[most + 7] != keys[2]
    for who, update in caps[most].updates.items():
        for name, a in update.items():
            np.testing.assert_array_equal(a, caps[most + 7].updates[who][name])
    assert any(not np.array_equal(a, caps[2].updates[who][name])
               for who, u in caps[most].updates.items() for name, a in u.items())


def test_the_local_mode_takes_its_own_sweep_and_the_gradient_mode_the_main_one() -> None:
    from fedaudit.attacks.trap_weights.sweep import mode_settings
    from fedaudit.config import validate_config

    cfg = validate_config(yaml_config())
    trap = cfg["attacks"]["trap_weights"]
    # the demo: the whole sweep in gradient mode, batch 8 with trap weights in local mode
    grad, local = mode_settings(trap, "gradient"), mode_settings(trap, "local")
    assert (grad["batch_sizes"], grad["inits"]) == ([8, 32, 128], ["trap", "binning"])
    assert (local["batch_sizes"], local["inits"]) == ([8], ["trap"])
    # nothing else differs, and neither carries what no job reads
    assert {k: v for k, v in local.items() if k not in ("batch_sizes", "inits")} == \
        {k: v for k, v in grad.items() if k not in ("batch_sizes", "inits")}
    assert not {"enabled", "scenarios", "modes", "local"} & set(local)
    # unset (the schema's default) the local mode sweeps what the gradient mode sweeps
    trap = {**trap, "local": {"batch_sizes": None, "inits": None}}
    assert mode_settings(trap, "local") == mode_settings(trap, "gradient")


def yaml_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())
