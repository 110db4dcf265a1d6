"""Client-level canaries through the clients' real noise code: the one-run audit of an update-noise
defense at the mechanism level (the sample-level canaries through the clients' DP-SGD are in
:mod:`.sample`, which needs torch; this module is numpy only, as the report reads it).

Each of ``m`` canary clients holds a random unit direction ``u_i`` of the update space (drawn by
the auditor) and is *in* the run with probability ½ by a draw the attacker never sees. In every
round an included canary's update is ``norm · u_i`` (``norm`` at or above the clip, so a correct
implementation clips it to C and a missing clip shows); an excluded canary's is the zero update
(add/remove one client, the adjacency DP-FedAvg's accountant uses). The update goes through the
defense's own ``perturb`` hook with the generator the client would use
(:func:`fedaudit.defenses.update_noise.perturb_update`), and the server sees the result, as it
sees every client's message. Canaries are left out of aggregation, so the audited model does not
change; only their messages are read.

The server's two attacks, both fixed before the run and each at level β/2 (Bonferroni), the
reported bound the larger (Steinke et al. 2023's guarantee holds for each fixed guesser):
- ``direct``: score_i = Σ_t ⟨y_i,t, u_i⟩, the Neyman–Pearson statistic for a Gaussian shift along
  ``u_i``;
- ``replay``: the same after subtracting the noise the server regenerates from what it holds
  (the config's seed and the seed derivation, as the noise replay attack does). Against the
  clients' OS-entropy source it only adds noise; against seeded noise it removes it all.

Outcome per defense level: m, guesses, correct, the one-run ε lower bound at 95 %, Andrew et al.'s
estimate, the accountant's claimed ε, and "violated" (bound above the claim), "consistent", or
"no claim" (Laplace noise has no clip and claims no ε).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedaudit.attacks.privacy_audit.gaussian import estimated_epsilon
from fedaudit.attacks.privacy_audit.one_run import Guesses, epsilon_lower_bound, guess
from fedaudit.defenses.noise_source import noise_seed, numpy_generator
from fedaudit.defenses.update_noise import perturb_update, regenerate
from fedaudit.runtime import derive_seed

ATTACKS = ("direct", "replay")
CONSISTENT, VIOLATED, NO_CLAIM = "consistent", "violated", "no claim"
# the auditor's inclusion draw in a real run: fresh OS entropy (the server holds the seed)
INCLUSION_SOURCE = "os_entropy"
# a client's noise generator for (canary, round); the default is the client's real source
ClientRng = Callable[[int, int], np.random.Generator]


@dataclass(frozen=True)
class CanaryDesign:
    """The auditor's plan, fixed before the run: ``m`` canaries over ``rounds`` rounds in a
    ``dim``-dimensional update space, each included update of norm ``norm_factor`` × the clip,
    and ``k_in`` / ``k_out`` guesses per side. By default each side guesses
    ``⌊m/2 − 1.5·√m⌋``: the number of included canaries is Binomial(m, ½), three standard
    deviations (1.5·√m) from m/2 at most, so even an attacker that ranks every canary right
    rarely has to guess "included" on an excluded one for lack of included ones (a rule that
    depends on m only, fixed before any score exists)."""

    m: int = 1000
    rounds: int = 1
    dim: int = 2048
    norm_factor: float = 10.0
    k_in: int | None = None
    k_out: int | None = None
    confidence: float = 0.95

    def guesses(self) -> tuple[int, int]:
        side = max(1, math.floor(self.m / 2 - 1.5 * math.sqrt(self.m)))
        return (side if self.k_in is None else self.k_in,
                side if self.k_out is None else self.k_out)


@dataclass(frozen=True)
class AuditResult:
    """One audited defense level (module docstring)."""

    m: int
    guesses: int
    correct: int
    attack: str  # the attack whose bound is reported
    epsilon_lower_bound: float
    epsilon_estimate: float
    epsilon_claimed: float | None
    status: str
    confidence: float


def canary_directions(design: CanaryDesign, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The auditor's secret draw: unit directions ``[m, dim]`` and inclusion flags ``[m]``.

    With ``m ≤ dim`` the directions are orthonormal (the Q of a Gaussian matrix's QR): where
    canaries share one model (DP-SGD's sample-level canaries), an included canary then adds
    nothing along another's direction. Merely random directions do: over a round, the ~m/2
    included canaries' repeated steps sum to a cross-talk larger than the noise (measured: a
    score spread of 14 against the noise's 9 at m = 1,000, dim = 4,096, 80 steps), which is
    the interference that limits one-run audits (Keinan, Shenfeld & Ligett, "How Well Can
    Differential Privacy Be Audited in One Run?", 2025)."""
    rng = np.random.default_rng(derive_seed(seed, "privacy_audit", "canaries"))
    g = rng.standard_normal((design.dim, design.m))
    if design.m <= design.dim:
        q, r = np.linalg.qr(g)
        u = (q * np.sign(np.diag(r))).T  # the sign fix makes the frame uniformly random
    else:
        u = (g / np.linalg.norm(g, axis=0, keepdims=True)).T
    included = rng.random(design.m) < 0.5
    return u, included


def canary_name(i: int) -> str:
    return f"canary{i:05d}"


def client_generator(entry: Mapping[str, Any], seed: int) -> ClientRng:
    """The generator a canary client draws its noise from in a round: the defense's own source
    (:func:`fedaudit.defenses.noise_source.numpy_generator`: OS entropy, or under ``simulation``
    the seed the server can derive)."""
    name = str(entry.get("name"))

    def rng(i: int, t: int) -> np.random.Generator:
        return numpy_generator(entry, noise_seed(seed, name, canary_name(i), t))

    return rng


def run_canaries(entry: Mapping[str, Any] | None, design: CanaryDesign, seed: int, *,
                 clip: float, client_rng: ClientRng | None = None
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run every canary client through the noise defense ``entry`` (None: no defense, the
    positive control) and score its messages as the server (module docstring). Returns each
    attack's scores ``[m]`` and the auditor's inclusion flags.

    ``clip`` is the claimed clip C (the canary's norm is ``norm_factor · C``; under Laplace, which
    has none, any scale); a bug is an ``entry`` the accountant was not told about (noise off,
    a larger clip); ``client_rng`` the clients' generators (tests: a seeded source the server
    cannot derive)."""
    u, included = canary_directions(design, seed)
    rng_of = client_rng or (client_generator(entry, seed) if entry is not None else None)
    scores = {a: np.zeros(design.m) for a in ATTACKS}
    name = None if entry is None else str(entry["name"])
    for t in range(1, design.rounds + 1):
        for i in range(design.m):
            update = [(design.norm_factor * clip * u[i]) if included[i]
                      else np.zeros(design.dim)]
            if entry is None:
                message = np.asarray(update[0], np.float64)
            else:
                message = np.asarray(perturb_update(update, entry, rng_of(i, t))[0],
                                     np.float64)
            scores["direct"][i] += float(message @ u[i])
            if entry is None:
                scores["replay"][i] += float(message @ u[i])
                continue
            # the server's replay: the noise it can regenerate from the config's seed
            guess_noise = regenerate([(design.dim,)], entry, noise_seed(seed, name,
                                                                        canary_name(i), t))
            scores["replay"][i] += float((message - guess_noise[0]) @ u[i])
    return scores, included


def audit(scores: Mapping[str, np.ndarray], included: np.ndarray, design: CanaryDesign,
          claimed: float | None, delta: float) -> AuditResult:
    """The one-run bound of each attack at level (1 − confidence)/|attacks| (Bonferroni), the
    larger reported with its attack, Andrew et al.'s estimate from the same attack's scores, and
    the status against the claimed ε."""
    k_in, k_out = design.guesses()
    per_attack = 1.0 - (1.0 - design.confidence) / len(scores)
    best: tuple[float, str, Guesses] | None = None
    for attack, s in scores.items():
        g = guess(s, included, k_in, k_out)
        bound = epsilon_lower_bound(g.m, g.r, g.v, delta, per_attack)
        if best is None or bound > best[0]:
            best = (bound, attack, g)
    assert best is not None
    bound, attack, g = best
    estimate = estimated_epsilon(scores[attack], included, delta)
    if claimed is None:
        status = NO_CLAIM
    else:
        status = VIOLATED if bound > claimed else CONSISTENT
    return AuditResult(m=g.m, guesses=g.r, correct=g.v, attack=attack,
                       epsilon_lower_bound=bound, epsilon_estimate=estimate,
                       epsilon_claimed=claimed, status=status, confidence=design.confidence)


def simulated_gaussian_bound(mu: float, design: CanaryDesign, seed: int, delta: float) -> float:
    """What a perfect white-box attacker reaches on the Gaussian mechanism itself: scores drawn
    N(μ·1[in], 1), guessed and bounded as the audit does (one attack, full confidence) — the
    reference the real pipeline's power is measured against."""
    u_rng = np.random.default_rng(derive_seed(seed, "privacy_audit", "simulated"))
    included = u_rng.random(design.m) < 0.5
    scores = u_rng.standard_normal(design.m) + mu * included
    k_in, k_out = design.guesses()
    g = guess(scores, included, k_in, k_out)
    return epsilon_lower_bound(g.m, g.r, g.v, delta, design.confidence)


def gaussian_mu(rounds: int, noise_multiplier: float) -> float:
    """μ of ``rounds`` rounds of the Gaussian mechanism with multiplier z on the clipped canary:
    the score's shift over its std, √T / z (∞ without noise)."""
    return math.inf if noise_multiplier == 0 else math.sqrt(rounds) / noise_multiplier
