"""The optimisation-based gradient-inversion attacks of paper 003 in one engine: DLG, CPL, iDLG
and Inverting Gradients differ only in their initial dummy, their distance between gradients,
their image prior, their optimiser and how they treat the target (a label or, for sCT, a CT).

Sources (each method's pieces):

* **DLG** -- Zhu, Liu and Han, "Deep Leakage from Gradients", NeurIPS 2019, Algorithm 1, Eq. 4:
  ``min_{x', y'} ‖∇θ L(F(x'), y') − ∇θ L(F(x), y)‖²`` over a uniform-random dummy image and a
  dummy *soft* label (``softmax(y')``), optimised with L-BFGS.
* **iDLG** -- Zhao, Mopuri and Bilen, "iDLG: Improved Deep Leakage from Gradients", 2020, §3.1:
  with cross-entropy on a softmax and a last fully connected layer ``z = W h + b``,
  ``∂L/∂W_i = (p_i − y_i) h``; the true class is the one row whose gradient has the opposite sign
  of the others (negative when ``h ≥ 0``, as after a sigmoid or ReLU). The label is read off,
  then DLG runs with it fixed (:func:`extract_label`).
* **CPL** -- Wei et al., "A Framework for Evaluating Gradient Leakage Attacks in Federated
  Learning", ESORICS 2020, §4.1 ("patterned random seed initialisation": a small random tile
  repeated over the image converges faster and more often than i.i.d. noise) and §4.2 (the label
  is restored from the last layer's gradient before the image is, as in iDLG); L-BFGS on the L2
  distance.
* **Inverting Gradients** -- Geiping, Bauermeister, Dröge and Moeller, "Inverting Gradients --
  How easy is it to break privacy in federated learning?", NeurIPS 2020, Eq. 4:
  ``min_{x ∈ [0,1]^n} 1 − ⟨∇θL(x, y), ∇θL(x*, y)⟩ / (‖∇θL(x, y)‖ ‖∇θL(x*, y)‖) + α TV(x)``,
  solved with Adam on the *signed* gradient of the objective (their §4 / code: "signed
  gradients"), the step decayed ×0.1 at 3/8, 5/8 and 7/8 of the iterations, the image projected
  onto the box after every step, and several restarts of which the one with the lowest objective
  is kept (chosen by the attacker's own objective, never by the ground truth).

The sCT setting (paper 000): the "label" is a CT image. ``target="known"`` hands the attacker the
client's CT (the upper-bound attacker of paper 000), ``target="joint"`` optimises a dummy CT as
DLG optimises a dummy label. The iDLG label trick needs cross-entropy: it does not apply to the
UNet's L1 regression (the suite then runs joint-target DLG and says so). The dummy MR is
confined to the head mask with background 0, as :mod:`fedaudit.attacks.dlg.inversion` does.

Budget: one *evaluation* is one computation of the gradient-matching objective and its gradient
(a double backpropagation). L-BFGS steps take several (their inner iterations and line search);
the loop stops when the next step could exceed ``evaluations``, so every method gets at most the
same number of double backpropagations.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's convention
from torch import nn
from tqdm import tqdm

from fedaudit.federation.local import LOSSES
from fedaudit.intensity import AIR_HU, hu_to_unit

TASKS = ("translation", "classification")
OBJECTIVES = ("l2", "cosine")
INITS = ("uniform", "pattern")
OPTIMIZERS = ("lbfgs", "adam", "signed_adam")
# translation: the CT target; classification: the label
TARGETS = {"translation": ("known", "joint"), "classification": ("known", "joint", "extracted")}
AIR_UNIT = float(hu_to_unit(np.float32(AIR_HU)))
# L-BFGS inner iterations per step: PyTorch's default, which DLG's and iDLG's code use.
LBFGS_INNER = 20
CHECK_EVERY = 25


@dataclass(frozen=True)
class Method:
    """One attack's recipe (the per-method defaults live in each method's ``schema.yaml``)."""

    name: str
    objective: str = "l2"
    tv: float = 0.0  # weight of the total-variation prior
    init: str = "uniform"
    pattern: int = 4  # CPL's tile side (pixels)
    optimizer: str = "lbfgs"
    lr: float = 1.0
    evaluations: int = 300  # objective evaluations per restart (the budget)
    restarts: int = 1
    box: bool = False  # project the dummy onto [0, 1] after every step
    target: str = "known"
    history_size: int = 100

    def __post_init__(self) -> None:
        for key, allowed in (("objective", OBJECTIVES), ("init", INITS),
                             ("optimizer", OPTIMIZERS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{self.name}: {key} must be one of {allowed}; got "
                                 f"{getattr(self, key)!r}")
        if self.target not in {t for ts in TARGETS.values() for t in ts}:
            raise ValueError(f"{self.name}: unknown target {self.target!r}")
        for key in ("pattern", "evaluations", "restarts", "history_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{self.name}: {key} must be an integer >= 1; got {v!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"{self.name}: lr must be a finite number > 0; got {self.lr}")
        if not (math.isfinite(self.tv) and self.tv >= 0):
            raise ValueError(f"{self.name}: tv must be a finite number >= 0; got {self.tv}")


@dataclass
class Inversion:
    """What one attack on one shared gradient produced (host arrays, ``[B, 1, H, W]``)."""

    reconstruction: np.ndarray
    label: np.ndarray | None  # classification: the attacker's labels (argmax of soft ones)
    target_reconstruction: np.ndarray | None  # translation, joint target: the dummy CT
    objective: float  # the kept restart's final objective
    restart_objectives: list[float] = field(default_factory=list)
    evaluations: int = 0  # over all restarts
    seconds: float = 0.0
    stopped_early: bool = False


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def shared_gradient_on(params: Sequence[torch.Tensor],
                       shared: Sequence[torch.Tensor | np.ndarray],
                       device: torch.device) -> list[torch.Tensor]:
    """The shared gradient as float32 tensors on ``device``, checked against the trainable
    ``params`` it must belong to (one tensor each, same shapes)."""
    grads = [torch.as_tensor(g).detach().to(device, torch.float32) for g in shared]
    if len(grads) != len(params):
        raise ValueError(f"{len(grads)} shared gradients for a model with {len(params)} "
                         "trainable tensors")
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if p.shape != g.shape:
            raise ValueError(f"shared gradient {i} has shape {tuple(g.shape)}, the parameter "
                             f"{tuple(p.shape)}: gradient and model do not belong together")
    return grads


def task_loss(task: str, output: torch.Tensor, target: torch.Tensor, loss: str = "l1"
              ) -> torch.Tensor:
    """The client's training loss: ``LOSSES[loss]`` for sCT (``target`` a CT batch),
    cross-entropy for the classifier (``target`` class indices ``[B]`` or soft labels
    ``[B, C]``, DLG's dummy label being ``softmax`` of a free vector)."""
    if task == "translation":
        return LOSSES[loss](output, target)
    if target.ndim == 1:
        return F.cross_entropy(output, target)
    return -(target * F.log_softmax(output, dim=-1)).sum(-1).mean()


def client_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, task: str,
                    loss: str = "l1") -> list[torch.Tensor]:
    """∇θ of the client's loss on one batch, as the client computes it (train mode, on a deep
    copy so BatchNorm running statistics of the caller's model stay untouched)."""
    net = copy.deepcopy(model).to(x.device).train()
    value = task_loss(task, net(x), target, loss)
    return [g.detach() for g in torch.autograd.grad(value, trainable(net))]


def matching_distance(dummy: Sequence[torch.Tensor], shared: Sequence[torch.Tensor],
                      objective: str) -> torch.Tensor:
    """``l2``: DLG Eq. 4, ``Σ_l ‖d_l − s_l‖²``; ``cosine``: Inverting Gradients Eq. 4's data
    term, ``1 − ⟨d, s⟩ / (‖d‖ ‖s‖)`` with every layer's gradient concatenated into one vector."""
    if len(dummy) != len(shared):
        raise ValueError(f"{len(shared)} shared gradients for {len(dummy)} trainable tensors")
    if objective == "l2":
        return torch.stack([((d - s) ** 2).sum() for d, s in zip(dummy, shared, strict=True)]
                           ).sum()
    dot = torch.stack([(d * s).sum() for d, s in zip(dummy, shared, strict=True)]).sum()
    dn = torch.stack([(d * d).sum() for d in dummy]).sum()
    sn = torch.stack([(s * s).sum() for s in shared]).sum()
    return 1.0 - dot / (dn.sqrt() * sn.sqrt()).clamp_min(1e-30)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation, the mean absolute difference of horizontal and vertical
    neighbours (Inverting Gradients' prior, Geiping et al. 2020 Eq. 4, as their code computes
    it)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy


def extract_label(shared: Sequence[torch.Tensor], model: nn.Module) -> int:
    """iDLG's label (Zhao et al. 2020, §3.1) from one sample's gradient: the row of the last
    fully connected layer's weight gradient whose sum is negative (``(p_c − 1) Σ h < 0`` for
    the true class ``c``, ``p_i Σ h > 0`` for the others, when the features ``h`` are
    non-negative); the most negative row when rounding makes several negative.

    The last linear layer is found as the last 2-D trainable tensor of ``model``."""
    params = trainable(model)
    last = max((i for i, p in enumerate(params) if p.ndim == 2), default=None)
    if last is None:
        raise ValueError("iDLG's label extraction needs a fully connected last layer; the "
                         "model has no 2-D weight")
    rows = torch.as_tensor(shared[last]).sum(dim=1)
    return int(torch.argmin(rows))


def initial_dummy(shape: tuple[int, ...], method: Method, gen: torch.Generator) -> torch.Tensor:
    """``uniform``: i.i.d. U[0, 1) pixels (DLG); ``pattern``: one U[0, 1) tile of side
    ``method.pattern`` per image, repeated over it (CPL §4.1)."""
    if method.init == "uniform":
        return torch.rand(shape, generator=gen)
    b, c, h, w = shape
    p = method.pattern
    tile = torch.rand((b, c, p, p), generator=gen)
    return tile.repeat(1, 1, -(-h // p), -(-w // p))[..., :h, :w].contiguous()


def _lr_milestones(evaluations: int) -> list[int]:
    return [int(evaluations * f) for f in (3 / 8, 5 / 8, 7 / 8)]


def _check_target(task: str, method: Method, known_target: object, num_classes: int) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}")
    if method.target not in TARGETS[task]:
        raise ValueError(f"{method.name}: target {method.target!r} does not apply to {task} "
                         f"(possible: {TARGETS[task]})")
    if (method.target == "known") != (known_target is not None):
        raise ValueError(f"{method.name}: target {method.target!r} "
                         + ("needs known_target" if method.target == "known" else
                            "must not be given the true target (it would hand the attacker "
                            "ground truth)"))
    if task == "classification" and method.target == "joint" and num_classes < 2:
        raise ValueError("a joint dummy label needs num_classes >= 2")


@dataclass
class _Problem:
    """One inversion's fixed parts, attacker side: the network in train mode, the shared
    gradient on its device, the head mask and the label or CT the method holds fixed (None: it
    is optimised as a second dummy)."""

    task: str
    method: Method
    loss: str
    net: nn.Module
    params: list[torch.Tensor]
    grads: list[torch.Tensor]
    mask: torch.Tensor
    fixed_label: torch.Tensor | None
    num_classes: int

    def dummies(self, vs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.mask * vs[0]
        if self.fixed_label is not None:
            return x, self.fixed_label
        if self.task == "classification":
            return x, F.softmax(vs[1], dim=-1)
        return x, self.mask * vs[1] + (1 - self.mask) * AIR_UNIT

    def objective(self, vs: list[torch.Tensor], create_graph: bool) -> torch.Tensor:
        x, y = self.dummies(vs)
        d = torch.autograd.grad(task_loss(self.task, self.net(x), y, self.loss), self.params,
                                create_graph=create_graph)
        value = matching_distance(d, self.grads, self.method.objective)
        return value + self.method.tv * total_variation(x) if self.method.tv > 0 else value

    def initial(self, shape: tuple[int, int, int, int], gen: torch.Generator
                ) -> list[torch.Tensor]:
        """A restart's dummies, drawn from ``gen`` in a fixed order (image, then target)."""
        dev = self.mask.device
        variables = [initial_dummy(shape, self.method, gen).to(dev).requires_grad_()]
        if self.method.target == "joint":
            classify = self.task == "classification"
            extra = (shape[0], self.num_classes) if classify else shape
            draw = torch.randn if classify else torch.rand
            variables.append(draw(extra, generator=gen).to(dev).requires_grad_())
        return variables


def _problem(model: nn.Module, shared: Sequence[torch.Tensor | np.ndarray], method: Method,
             task: str, shape: tuple[int, int, int, int],
             mask: np.ndarray | torch.Tensor | None, known_target: object, num_classes: int,
             loss: str, dev: torch.device) -> _Problem:
    net = copy.deepcopy(model).to(dev).train()
    params = trainable(net)
    grads = shared_gradient_on(params, shared, dev)
    m = (torch.ones(shape) if mask is None else torch.as_tensor(np.asarray(mask))
         ).to(dev, torch.float32)
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"mask shape {tuple(m.shape)} != {tuple(shape)}")
    fixed_label = None
    if task == "classification" and method.target == "extracted":
        if shape[0] != 1:
            raise ValueError("iDLG's label extraction reads one sample's gradient: batch 1 only")
        fixed_label = torch.tensor([extract_label(grads, net)], device=dev)
    elif method.target == "known":
        fixed_label = torch.as_tensor(np.asarray(known_target)).to(dev)
        fixed_label = (fixed_label.long() if task == "classification"
                       else fixed_label.float())
    return _Problem(task, method, loss, net, params, grads, (m > 0).float(), fixed_label,
                    num_classes)


def _optimizer(method: Method, variables: list[torch.Tensor]
               ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    if method.optimizer == "lbfgs":
        return torch.optim.LBFGS(variables, lr=method.lr, max_iter=LBFGS_INNER,
                                 history_size=method.history_size,
                                 line_search_fn="strong_wolfe"), None
    opt = torch.optim.Adam(variables, lr=method.lr)
    return opt, torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=_lr_milestones(method.evaluations), gamma=0.1)


class Watch:
    """What a caller of :func:`descend` observes of an optimisation; the default observes
    nothing. DLG's loop (:func:`fedaudit.attacks.dlg.inversion.reconstruct`) records every
    step's objective, snapshots and log lines through it."""

    def after_step(self, steps: int, value: torch.Tensor | None) -> bool:
        """Called after every step with its objective (a device tensor, or None); True asks
        for a finiteness check (and :meth:`kept`) now."""
        return False

    def finite(self, steps: int) -> list[torch.Tensor]:
        """Further device booleans that must hold at a check (besides the dummies')."""
        return []

    def kept(self, steps: int, variables: list[torch.Tensor]) -> None:
        """The dummies after ``steps`` steps passed a check."""


@dataclass
class Descent:
    """How one optimisation of the dummies ended: the last dummies known to be finite (after
    ``good_step`` steps), the steps and objective evaluations made, and whether it stopped on a
    non-finite value."""

    good: list[torch.Tensor]
    good_step: int
    steps: int
    evaluations: int
    stopped: bool


def descend(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler | None,
            closure: Callable[[], torch.Tensor], variables: list[torch.Tensor], *,
            budget: int, evaluations: Callable[[], int], bar: tqdm, box: bool = False,
            lbfgs_cap: int | None = None, check_every: int = CHECK_EVERY,
            watch: Watch | None = None) -> Descent:
    """The optimisation loop every gradient-matching attack runs (DLG and the suite): step the
    optimiser on ``closure`` (which counts its calls, read by ``evaluations``) until ``budget``
    evaluations are made, step the schedule, project onto [0, 1] when ``box``, and check the
    dummies for non-finite values every ``check_every`` steps, at the end and when ``watch``
    asks -- one host sync per check, not per step; a failed check stops the loop and keeps the
    last finite dummies. ``lbfgs_cap``: L-BFGS inner iterations per step, capped so a step
    (up to 1.25 × its iterations in evaluations) stays within the budget left."""
    watch = watch or Watch()
    good, good_step, steps = [v.detach().clone() for v in variables], 0, 0
    while evaluations() < budget:
        before = evaluations()
        if lbfgs_cap is not None:
            left = budget - before
            opt.param_groups[0]["max_iter"] = max(1, min(lbfgs_cap, left * 4 // 5))
            opt.param_groups[0]["max_eval"] = left
        value = opt.step(closure)
        if sched is not None:
            sched.step()
        if box:
            with torch.no_grad():
                variables[0].clamp_(0.0, 1.0)
        steps += 1
        bar.update(evaluations() - before)
        if evaluations() == before:  # L-BFGS converged (no evaluation left to make progress)
            break
        wanted = watch.after_step(steps, value)
        if wanted or steps % check_every == 0 or evaluations() >= budget:
            checks = [torch.isfinite(v).all() for v in variables] + watch.finite(steps)
            if not bool(torch.stack(checks).all()):
                return Descent(good, good_step, steps, evaluations(), True)
            good, good_step = [v.detach().clone() for v in variables], steps
            watch.kept(steps, variables)
    return Descent(good, good_step, steps, evaluations(), False)


def _restart(problem: _Problem, variables: list[torch.Tensor], bar: tqdm
             ) -> tuple[list[torch.Tensor], int, bool]:
    """One restart's optimisation within ``method.evaluations`` objective evaluations: (the
    last finite dummies, evaluations made, stopped on a non-finite value)."""
    method = problem.method
    evals = 0

    def closure(vs: list[torch.Tensor] = variables) -> torch.Tensor:
        nonlocal evals
        evals += 1
        value = problem.objective(vs, True)
        for v, g in zip(vs, torch.autograd.grad(value, vs), strict=True):
            v.grad = g.sign() if method.optimizer == "signed_adam" else g
        return value.detach()

    opt, sched = _optimizer(method, variables)
    done = descend(opt, sched, closure, variables, budget=method.evaluations,
                   evaluations=lambda: evals, bar=bar, box=method.box,
                   lbfgs_cap=LBFGS_INNER if method.optimizer == "lbfgs" else None)
    return done.good, done.evaluations, done.stopped


def invert(model: nn.Module, shared: Sequence[torch.Tensor | np.ndarray], method: Method, *,
           task: str, shape: tuple[int, int, int, int], seed: int,
           mask: np.ndarray | torch.Tensor | None = None,
           known_target: np.ndarray | torch.Tensor | None = None, num_classes: int = 0,
           loss: str = "l1", device: str | torch.device = "cpu", progress: bool = False,
           clock: Callable[[], float] = time.perf_counter) -> Inversion:
    """Reconstruct a batch of ``shape`` from ``shared`` (one tensor per trainable parameter of
    ``model``, in order), attacker side: the model the server sent, the shared gradient, the
    head ``mask`` (translation) and the target only as the method's ``target`` allows:

    * translation, ``known``: ``known_target`` is the client's unit-range CT; ``joint``: none;
    * classification, ``known``: ``known_target`` the true labels; ``extracted``: none (iDLG,
      batch 1); ``joint``: none (a dummy soft label over ``num_classes``).

    Of ``method.restarts`` restarts, the one with the lowest final objective is kept (the
    attacker's own criterion).
    """
    _check_target(task, method, known_target, num_classes)
    dev = torch.device(device)
    problem = _problem(model, shared, method, task, shape, mask, known_target, num_classes,
                       loss, dev)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    total_evals = 0
    best: tuple[float, list[torch.Tensor]] | None = None
    restart_objectives: list[float] = []
    stopped_any = False
    t0 = clock()
    bar = tqdm(total=method.evaluations * method.restarts, desc=method.name, file=sys.stderr,
               mininterval=5.0, disable=not progress)
    for _ in range(method.restarts):
        good, evals, stopped = _restart(problem, problem.initial(shape, gen), bar)
        final = problem.objective(good, False).detach()
        value = float(final) if bool(torch.isfinite(final)) else math.inf
        restart_objectives.append(value)
        total_evals += evals
        stopped_any |= stopped
        if best is None or value < best[0]:
            best = (value, good)
    bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = clock() - t0
    assert best is not None
    value, vs = best
    x, y = problem.dummies(vs)
    label = target_rec = None
    if task == "classification":
        label = (y.argmax(-1) if y.ndim == 2 else y).cpu().numpy().astype(np.int64)
    elif method.target == "joint":
        target_rec = y.detach().cpu().numpy().astype(np.float32)
    return Inversion(reconstruction=x.detach().cpu().numpy().astype(np.float32),
                     label=label, target_reconstruction=target_rec, objective=value,
                     restart_objectives=restart_objectives, evaluations=total_evals,
                     seconds=seconds, stopped_early=stopped_any)
