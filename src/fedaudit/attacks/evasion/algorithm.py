"""FGSM, BIM and PGD under an L∞ budget: one implementation for any differentiable model and
any per-sample objective (the attacker side of paper 004's test-time evasion).

Paper 004 (Darzi et al., "Exploring adversarial attacks in federated learning for medical
imaging", §II-B) uses the three attacks a malicious client can run with the global model it
receives and its own local model:

- **FGSM** (Goodfellow, Shlens and Szegedy, "Explaining and harnessing adversarial examples",
  ICLR 2015, §3, the fast gradient sign method ``η = ε·sign(∇ₓJ(θ, x, y))``; paper 004 Eq. 2):
  ``x' = clip₀¹(x + ε·sign(∇ₓL(x)))``, one step that lands on the ε-ball's corner.
- **BIM** (Kurakin, Goodfellow and Bengio, "Adversarial examples in the physical world", ICLR
  2017 workshop, §2.2, the basic iterative method): ``x'₀ = x``,
  ``x'ₙ₊₁ = Clip_{x,ε}{x'ₙ + α·sign(∇ₓL(x'ₙ))}`` where ``Clip_{x,ε}`` clips every pixel to
  ``[max(0, x − ε), min(1, x + ε)]`` (their Eq. with 255 replaced by 1: our MR is in [0, 1]).
- **PGD** (Madry et al., "Towards deep learning models resistant to adversarial attacks", ICLR
  2018, §2 "projected gradient descent" on the negative loss, with a uniformly random start in
  the ε-ball; paper 004 Eq. 3): the BIM iteration started at ``clip₀¹(x + U(−ε, ε))``.

The projection onto the ball and onto the image range is the one of Madry et al.'s reference
code and of ``torchattacks`` (``δ = clamp(x' − x, −ε, ε)``, ``x' = clamp(x + δ, 0, 1)``), the
same set as Kurakin's Clip; FGSM clips to [0, 1] only (its step is ε, so it never leaves the
ball). A result therefore never leaves [0, 1] or the ε-ball (up to float32 rounding of
``x + δ``, below 1e-7 on [0, 1]).

Untargeted attacks *ascend* an objective (the attacked model's error), targeted ones *descend*
one (the distance to what the attacker wants the model to output). The objective maps the
model's output of a batch to one loss per sample; the gradient of their sum is taken, so each
sample's step depends on its own loss only (the model runs in eval mode: BatchNorm uses its
running statistics and samples do not mix). The objectives FedAudit attacks with:

- :func:`sct_error` (untargeted, the sCT UNet): the in-mask L1 error against the true CT in the
  model's own output scale (unit intensity, :mod:`fedaudit.intensity`) -- the training loss,
  restricted to the head;
- :func:`sct_region_target` (targeted): the in-region L1 distance of the output to one HU value,
  e.g. bone (CT > 300 HU) pushed toward soft tissue (40 HU), a shift that changes a dose plan;
- :func:`cross_entropy` (untargeted, a classifier): torchattacks' loss, the positive control.

Numerics: the attack runs in float32 without autocast on every device (bfloat16's 8-bit
mantissa would round small input gradients to zero and change their sign pattern); random
starts are drawn on the CPU from a seeded ``torch.Generator`` and moved to the device, so CPU
and CUDA start from the same point (on the CPU a result is reproducible bit for bit; cuDNN's
convolution backward need not be, so on CUDA a sign may differ where a gradient is ~0).
:func:`craft` runs batch by batch and records the time per batch (synchronising CUDA before
reading the clock).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from fedaudit.intensity import hu_to_unit

METHODS = ("fgsm", "bim", "pgd")

# per-sample objective: model output of a batch -> one loss per sample, shape [B]
Objective = Callable[[torch.Tensor], torch.Tensor]


class AttackSettingError(ValueError):
    """An attack that cannot be run as asked (unknown method, non-positive ε, ...)."""


@dataclass(frozen=True)
class Attack:
    """One attack setting. ``alpha`` is the step of BIM / PGD (FGSM's is ε, so it is ignored);
    ``steps`` the iterations (FGSM: 1); ``random_start`` defaults to the method's definition
    (PGD: yes, FGSM / BIM: no). ``targeted`` descends the objective instead of ascending it."""

    method: str
    epsilon: float
    alpha: float | None = None
    steps: int = 1
    random_start: bool | None = None
    targeted: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise AttackSettingError(f"unknown attack {self.method!r}; known: "
                                     f"{', '.join(METHODS)}")
        if not 0 < self.epsilon <= 1:
            raise AttackSettingError(f"{self.method}: epsilon {self.epsilon} must lie in (0, 1] "
                                     "(the MR is in [0, 1])")
        if self.method == "fgsm":
            if self.steps != 1:
                raise AttackSettingError(f"fgsm takes one step; got steps = {self.steps}")
            if self.random_start:
                raise AttackSettingError("fgsm has no random start (Goodfellow et al. 2015)")
            return
        if self.alpha is None or not self.alpha > 0:
            raise AttackSettingError(f"{self.method}: the step alpha must be positive; got "
                                     f"{self.alpha}")
        if self.steps < 1:
            raise AttackSettingError(f"{self.method}: steps must be >= 1; got {self.steps}")

    @property
    def starts_randomly(self) -> bool:
        return self.method == "pgd" if self.random_start is None else bool(self.random_start)

    @property
    def step(self) -> float:
        return self.epsilon if self.method == "fgsm" else float(self.alpha)

    @property
    def iterations(self) -> int:
        return 1 if self.method == "fgsm" else self.steps


def project(x_adv: torch.Tensor, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The nearest point of the ε-ball around ``x`` intersected with [0, 1] (per pixel; the
    ``Clip_{x,ε}`` of Kurakin et al. 2017 and the projection of Madry et al. 2018)."""
    delta = torch.clamp(x_adv - x, min=-epsilon, max=epsilon)
    return torch.clamp(x + delta, min=0.0, max=1.0)


def random_start(x: torch.Tensor, epsilon: float, generator: torch.Generator | None
                 ) -> torch.Tensor:
    """PGD's start (Madry et al. 2018, §2 and their code): ``clip₀¹(x + U(−ε, ε))``, drawn on
    the CPU from ``generator`` (the global CPU generator when None) and moved to ``x``'s
    device, so CPU and CUDA runs start alike."""
    noise = torch.empty(x.shape, dtype=x.dtype).uniform_(-epsilon, epsilon, generator=generator)
    return torch.clamp(x + noise.to(x.device), min=0.0, max=1.0)


def random_sign(x: torch.Tensor, epsilon: float, generator: torch.Generator | None
                ) -> torch.Tensor:
    """The null an attack must beat: a random corner of the same ε-ball, ``clip₀¹(x + ε·s)``
    with independent signs s = ±1 (Rademacher), drawn on the CPU from ``generator``."""
    signs = torch.randint(0, 2, x.shape, generator=generator).to(x.dtype) * 2 - 1
    return torch.clamp(x + epsilon * signs.to(x.device), min=0.0, max=1.0)


def _input_gradient(model: nn.Module, x_adv: torch.Tensor, objective: Objective
                    ) -> torch.Tensor:
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad(), torch.autocast(device_type=x_adv.device.type, enabled=False):
        loss = objective(model(x_adv)).sum()
        (grad,) = torch.autograd.grad(loss, [x_adv])
    return grad


def perturb(model: nn.Module, x: torch.Tensor, objective: Objective, attack: Attack, *,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """The adversarial version of the batch ``x`` (values in [0, 1]) against ``model``.

    FGSM (Goodfellow et al. 2015, §3): ``clip₀¹(x ± ε·sign(∇ₓ))``. BIM (Kurakin et al. 2017,
    §2.2) and PGD (Madry et al. 2018, §2): ``attack.steps`` iterations of
    ``x' ← Clip_{x,ε}(x' ± α·sign(∇ₓ))`` from ``x`` (BIM) or from a uniformly random point of
    the ball (PGD, :func:`random_start`). ``+`` ascends the objective (untargeted), ``−``
    descends it (``attack.targeted``). The model is put in eval mode for the attack and left in
    the mode it had; its parameters get no gradient."""
    x = x.detach().float()
    was_training = model.training
    model.eval()
    direction = -1.0 if attack.targeted else 1.0
    try:
        if attack.method == "fgsm":
            grad = _input_gradient(model, x, objective)
            return torch.clamp(x + direction * attack.epsilon * grad.sign(), min=0.0,
                               max=1.0).detach()
        x_adv = (random_start(x, attack.epsilon, generator) if attack.starts_randomly
                 else x.clone())
        for _ in range(attack.iterations):
            grad = _input_gradient(model, x_adv, objective)
            x_adv = project(x_adv.detach() + direction * attack.step * grad.sign(), x,
                            attack.epsilon)
        return x_adv.detach()
    finally:
        model.train(was_training)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def craft(model: nn.Module, x: torch.Tensor, objective_for: Callable[[slice], Objective],
          attack: Attack, *, batch_size: int, seed: int
          ) -> tuple[torch.Tensor, list[float]]:
    """:func:`perturb` over ``x`` in batches of ``batch_size`` (in order), the objective of
    samples ``[start, stop)`` being ``objective_for(slice(start, stop))``. Batch ``b``'s random
    start is drawn from a generator seeded ``seed + b``, so the result does not depend on the
    device. Returns the adversarial inputs (on ``x``'s device) and the seconds each batch took."""
    if batch_size < 1:
        raise AttackSettingError(f"batch_size must be >= 1; got {batch_size}")
    out, seconds = [], []
    for b, start in enumerate(range(0, x.shape[0], batch_size)):
        part = slice(start, min(start + batch_size, x.shape[0]))
        generator = torch.Generator().manual_seed(int(seed) + b)
        _sync(x.device)
        t0 = time.perf_counter()
        out.append(perturb(model, x[part], objective_for(part), attack, generator=generator))
        _sync(x.device)
        seconds.append(time.perf_counter() - t0)
    return torch.cat(out) if out else x.clone(), seconds


# ------------------------------------------------------------------------------ objectives


def _masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, values.ndim))
    return (values * weight).sum(dims) / weight.sum(dims).clamp(min=1.0)


def sct_error(target_unit: torch.Tensor, mask: torch.Tensor) -> Objective:
    """Untargeted sCT objective: per slice, the mean |f(x') − CT| over the head mask, in the
    model's output scale (unit intensity of the SynthRAD2023 HU range; the training L1 loss
    restricted to the head, paper 000 "Federated Learning Framework")."""
    weight = mask.to(target_unit.dtype)
    return lambda out: _masked_mean((out - target_unit).abs(), weight)


def sct_region_target(region: torch.Tensor, target_hu: float) -> Objective:
    """Targeted sCT objective: per slice, the mean |f(x') − unit(target_hu)| over ``region``
    (e.g. bone, CT > 300 HU, pushed toward soft tissue at 40 HU); a slice without region
    voxels has objective 0 and gets no gradient."""
    value = float(hu_to_unit(torch.tensor(float(target_hu))))
    weight = region.float()
    return lambda out: _masked_mean((out - value).abs(), weight.to(out.dtype))


def cross_entropy(labels: torch.Tensor) -> Objective:
    """Untargeted classifier objective: per-sample cross-entropy (torchattacks' loss; the mean
    it takes changes the gradient by 1/B, not its sign)."""
    return lambda logits: F.cross_entropy(logits, labels, reduction="none")
