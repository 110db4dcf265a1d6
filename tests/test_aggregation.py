"""Aggregation rules against independent references (numpy, scipy, Flower's own functions)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.server.strategy.aggregate import aggregate as flwr_weighted_mean
from flwr.server.strategy.aggregate import aggregate_krum, aggregate_median
from scipy import stats

from fedaudit.federation.aggregation import (
    fedavg,
    fedmedian,
    krum,
    trimmed_mean,
    trims_to_median,
)


def _clients(rng: np.random.Generator, k: int = 5) -> list[list[np.ndarray]]:
    return [[rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(7).astype(
        np.float32)] for _ in range(k)]


def test_fedavg_is_the_example_weighted_mean() -> None:
    rng = np.random.default_rng(0)
    ups, n = _clients(rng), [10, 20, 30, 5, 1]
    ref = flwr_weighted_mean(list(zip(ups, n, strict=True)))
    for got, want in zip(fedavg(ups, n), ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # closed form: equal weights -> plain mean
    np.testing.assert_allclose(fedavg(ups, [1] * 5)[0], np.mean([u[0] for u in ups], 0),
                               rtol=1e-6)


def test_fedmedian_equals_numpy_coordinatewise_median_of_client_weights() -> None:
    rng = np.random.default_rng(1)
    w_global = [rng.standard_normal((3, 4)).astype(np.float32),
                rng.standard_normal(7).astype(np.float32)]
    for k in (4, 5):  # even and odd client counts
        weights = _clients(rng, k)
        updates = [[w - g for w, g in zip(wk, w_global, strict=True)] for wk in weights]
        # the server aggregates updates; the result must be the median of the weights
        new = [g + m for g, m in zip(w_global, fedmedian(updates), strict=True)]
        for i in range(2):
            np.testing.assert_allclose(new[i], np.median(np.stack([w[i] for w in weights]), 0),
                                       atol=1e-6)
        for got, want in zip(fedmedian(weights), aggregate_median(
                [(w, 1) for w in weights]), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-6)


def test_krum_picks_the_planted_honest_client() -> None:
    rng = np.random.default_rng(2)
    center = [np.zeros((3, 4), np.float32), np.zeros(7, np.float32)]
    honest = [[a + 0.1 * rng.standard_normal(a.shape).astype(np.float32) for a in center]
              for _ in range(4)]
    planted = [a.copy() for a in center]  # exactly at the honest centre: the lowest score
    attackers = [[a + 50.0 + rng.standard_normal(a.shape).astype(np.float32) for a in center]
                 for _ in range(2)]
    ups = [attackers[0], honest[0], honest[1], planted, honest[2], attackers[1], honest[3]]
    agg, idx = krum(ups, num_malicious=2)
    assert idx == 3
    np.testing.assert_array_equal(agg[0], planted[0])
    ref = aggregate_krum([(u, 1) for u in ups], num_malicious=2, to_keep=0)
    np.testing.assert_allclose(ref[0], planted[0])


def test_krum_refuses_a_federation_too_small_for_its_guarantee() -> None:
    # Blanchard et al. need n > 2f + 2: four clients with f = 1 (the demo's federation) would
    # run, with n - f - 2 = 1 neighbour per score, but without Krum's guarantee.
    with pytest.raises(ValueError, match=r"'krum' needs n > 2f \+ 2 clients .*n=4, f=1"):
        krum(_clients(np.random.default_rng(3), 4), num_malicious=1)
    agg, _ = krum(_clients(np.random.default_rng(3), 5), num_malicious=1)  # 5 > 4: runs
    assert len(agg) == 2


def test_trimmed_mean_that_trims_to_the_median_is_detected_and_is_the_median() -> None:
    ups = _clients(np.random.default_rng(5), 4)
    assert trims_to_median(4, 0.25) and trims_to_median(5, 0.4) and not trims_to_median(8, 0.25)
    for got, want in zip(trimmed_mean(ups, 0.25), fedmedian(ups), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_trimmed_mean_matches_scipy() -> None:
    ups = _clients(np.random.default_rng(4), 8)
    got = trimmed_mean(ups, 0.25)
    np.testing.assert_allclose(got[1], stats.trim_mean(np.stack([u[1] for u in ups]), 0.25,
                                                       axis=0), rtol=1e-6)


def test_unknown_rule_is_named() -> None:
    from fedaudit.federation.strategy import AuditStrategy

    with pytest.raises(ValueError, match="unknown aggregation 'mean' .registered: fedavg"):
        AuditStrategy(centers=["A"], names=[], initial=[], aggregation="mean", first_round=1,
                      total_rounds=1, log_dir=None)


def test_every_registered_rule_runs_with_its_schema_defaults() -> None:
    """The catalog's rules (fedaudit/federation/aggregators/) with their parameters' schema
    defaults reproduce the arithmetic they wrap (Krum picks a client, the others combine)."""
    from fedaudit.catalog import catalog, fragment_defaults, resolve

    ups = _clients(np.random.default_rng(6), 7)
    n = [3, 1, 4, 1, 5, 9, 2]
    rules = catalog().aggregators
    assert set(rules) == {"fedavg", "fedmedian", "krum", "trimmed_mean"}
    want = {"fedavg": fedavg(ups, n), "fedmedian": fedmedian(ups),
            "trimmed_mean": trimmed_mean(ups, 0.25), "krum": krum(ups, 1)[0]}
    for name, spec in rules.items():
        params = fragment_defaults(spec.folder)
        got, _ = resolve(spec.function, spec.package)(ups, n, **params)
        for g, w in zip(got, want[name], strict=True):
            np.testing.assert_array_equal(g, w)
