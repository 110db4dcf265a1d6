"""FedMIA membership inference against the honest-but-curious server's log.

Source: Zhu, Li, Gu, Yao, Fan, Han, "FedMIA: An Effective Membership Inference Attack Exploiting
'All for One' Principle in Federated Learning", CVPR 2025; as applied by paper 000
("Membership Inference", steps 1-3, Eq. 1, Fig. 3) and DESIGN.md (FedMIA facts).

1. Measurement (attacker; recorded once): for round r the server holds the global model w^(r)
   it sent and, per client, what it received from it: the update Δw_k^(r) = w_k^(r) − w^(r)
   (paper 000 Eq. 1), or under SecAgg+ the client's masked vector and the aggregate. For every
   candidate unit i the attacker takes the gradient g_i of the clients' loss at w^(r) (training
   mode, as the clients compute it) and forms s_k(i) = cos(−g_i, Δw_k) over all trainable
   parameters: a clients × units matrix per round and view. A unit is one MR/CT slice, or, as
   paper 000 words it, "one MRI and CT batch": ``batch_size`` slices of one patient whose mean
   loss gives one gradient (BatchNorm normalising over the batch, as in training).
   The gradient enters with its sign flipped because Δw_k is a descent step: a sample the client
   trained on pushes Δw_k along −g_i, so members score high, as FedMIA's scores require.
2. Scoring (attacker; offline): for target client t and unit i, the non-member null is a
   Gaussian fitted to the other clients' similarities for the same unit (mean, population
   variance + 1e-8), refitted after dropping values above μ + 3σ (possible members of another
   client); the score is Φ((s_t(i) − μ)/σ), averaged over the rounds used. The uncalibrated
   cosine s_t(i) is the second score: all a server holding only the aggregate can compute.
3. Evaluation (evaluator; holds the ground truth): :mod:`fedaudit.attacks.fedmia.evaluation`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn
from torch.func import functional_call, grad, vmap

from fedaudit.data.slices import ORIENTATIONS, Volume, slice_indices, take_slice
from fedaudit.federation.local import LOSSES
from fedaudit.intensity import hu_to_unit

VAR_EPS = 1e-8  # added to the null's variance, as in FedMIA's code
DROP_SIGMA = 3.0
FPR_POINTS = (0.001, 0.01, 0.1)


# --------------------------------------------------------------------- candidate samples


@dataclass
class Candidates:
    """The attacker's query set: unaugmented slices of patients it holds, with provenance only
    (no membership: the attacker does not know which are members)."""

    mr: torch.Tensor  # [N, 1, H, W]
    ct: torch.Tensor  # [N, 1, H, W], unit range
    center: np.ndarray  # [N] str
    patient: np.ndarray  # [N] str
    orientation: np.ndarray  # [N] str
    index: np.ndarray  # [N] int

    def __len__(self) -> int:
        return int(self.mr.shape[0])


def candidate_slices(volumes: Iterable[tuple[str, Volume]], per_orientation: int,
                     orientations: Sequence[str] = ORIENTATIONS) -> Candidates:
    """``per_orientation`` evenly spaced head-containing slices per orientation and patient.

    Training draws a random orientation per volume and round (Random Multi-2D), so the query set
    covers all three; slices are unaugmented (the attacker holds the original images). ``volumes``
    is consumed once, so a generator keeps only one volume in memory at a time.
    """
    if per_orientation < 1:
        raise ValueError(f"per_orientation must be >= 1; got {per_orientation}")
    mr, ct, meta = [], [], []
    for center, vol in volumes:
        for orient in orientations:
            idx = slice_indices(vol, orient)
            if idx.size > per_orientation:
                idx = idx[np.round(np.linspace(0, idx.size - 1, per_orientation)).astype(int)]
            for k in idx:
                mr.append(take_slice(vol.mr, orient, k))
                ct.append(hu_to_unit(take_slice(vol.ct, orient, k)))
                meta.append((center, vol.name, orient, int(k)))
    if not meta:
        raise ValueError("no candidate slices: every volume has an empty head mask")
    cols = list(zip(*meta, strict=True))
    return Candidates(
        mr=torch.from_numpy(np.stack(mr).astype(np.float32))[:, None],
        ct=torch.from_numpy(np.stack(ct).astype(np.float32))[:, None],
        center=np.array(cols[0]), patient=np.array(cols[1]), orientation=np.array(cols[2]),
        index=np.array(cols[3], dtype=np.int64))


# --------------------------------------------------------------------- per-sample gradients


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def batch_groups(cand: Candidates, batch_size: int) -> list[np.ndarray]:
    """Candidate units of ``batch_size`` slices of one patient and orientation.

    A patient's slices in one orientation (evenly spaced, :func:`candidate_slices`) are dealt
    round-robin into ⌊n / batch_size⌋ batches, so each batch spans the head as a training batch
    of random slices does; a remainder smaller than a batch is left out (one slice-count per
    gradient keeps the units comparable).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    groups = []
    keys = np.char.add(np.char.add(cand.center.astype(str), "/"),
                       np.char.add(np.char.add(cand.patient.astype(str), "/"),
                                   cand.orientation.astype(str)))
    for key in dict.fromkeys(keys.tolist()):
        idx = np.flatnonzero(keys == key)
        idx = idx[np.argsort(cand.index[idx], kind="stable")]
        n_batches = idx.size // batch_size
        for b in range(n_batches):
            groups.append(idx[b::n_batches][:batch_size])
    if not groups:
        raise ValueError(f"no patient has {batch_size} candidate slices in one orientation: "
                         "lower the batch size or raise slices_per_orientation")
    return groups


def per_sample_gradients(model: nn.Module, mr: torch.Tensor, ct: torch.Tensor, loss: str = "l1",
                         chunk_size: int = 32, groups: Sequence[np.ndarray] | None = None
                         ) -> Iterator[torch.Tensor]:
    """Flattened gradients ``[n, P]`` of the mean loss of each unit, chunk by chunk: a unit is
    one slice (``groups`` None) or the slices ``groups[u]`` forming one batch (equal sizes).

    ``torch.func`` (functional_call + vmap(grad)): BatchNorm in training mode normalises each
    unit by its own statistics, exactly what a training batch of that unit does; its
    running-statistics update (a side effect that does not change the gradient) is switched off
    so vmap can run.
    """
    fmodel = copy.deepcopy(model)
    torch.func.replace_all_batch_norm_modules_(fmodel)
    fmodel.train()
    names = trainable_names(fmodel)
    params = {n: p.detach() for n, p in fmodel.named_parameters() if n in names}
    loss_fn = LOSSES[loss]

    def one(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(fmodel, p, (x,)), y)

    batched = vmap(grad(one), in_dims=(None, 0, 0))
    device = next(fmodel.parameters()).device
    index = (np.arange(mr.shape[0])[:, None] if groups is None
             else np.stack([np.asarray(g) for g in groups]))
    per_chunk = max(1, chunk_size // index.shape[1])
    for i in range(0, index.shape[0], per_chunk):
        sel = torch.from_numpy(index[i:i + per_chunk])
        x = mr[sel].to(device, non_blocking=True)
        y = ct[sel].to(device, non_blocking=True)
        g = batched(params, x, y)
        yield torch.cat([g[n].reshape(x.shape[0], -1) for n in names], dim=1)


def per_sample_gradients_loop(model: nn.Module, mr: torch.Tensor, ct: torch.Tensor,
                              loss: str = "l1", groups: Sequence[np.ndarray] | None = None
                              ) -> torch.Tensor:
    """Reference implementation: one ``backward()`` per unit on a copy in training mode."""
    out = []
    units = [np.array([i]) for i in range(mr.shape[0])] if groups is None else groups
    for g in units:
        sel = torch.from_numpy(np.asarray(g))
        m = copy.deepcopy(model).train()
        m.zero_grad(set_to_none=True)
        LOSSES[loss](m(mr[sel]), ct[sel]).backward()
        out.append(torch.cat([p.grad.reshape(-1) for n, p in m.named_parameters()
                              if p.requires_grad]))
    return torch.stack(out)


def flat_update(update: dict[str, np.ndarray], names: Sequence[str]) -> torch.Tensor:
    """Δw over the trainable parameters, flattened in ``names`` order (BN running statistics are
    exchanged but are not parameters, so they are left out, as in FedMIA)."""
    missing = [n for n in names if n not in update]
    if missing:
        raise ValueError(f"update lacks trainable parameter(s) {missing[:3]}: the server log "
                         "belongs to a different model")
    return torch.cat([torch.from_numpy(np.asarray(update[n], dtype=np.float32)).reshape(-1)
                      for n in names])


def similarity_matrix(model: nn.Module, updates: Sequence[torch.Tensor], cand: Candidates,
                      *, loss: str = "l1", chunk_size: int = 32,
                      groups: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """s_k(i) = cos(−g_i, Δw_k): ``[clients, units]`` float64 (step 1 of the module docstring).

    ``model`` must hold the round's global weights (it is not modified); ``updates`` are flat
    Δw_k as from :func:`flat_update` (several views may be stacked: rows follow ``updates``);
    units are slices, or the batches ``groups`` (:func:`batch_groups`). Gradients are never held
    for the whole set, only a chunk.
    """
    device = next(model.parameters()).device
    d = torch.stack([u.to(device) for u in updates])
    d = nn.functional.normalize(d, dim=1)
    rows = []
    with torch.no_grad():
        for g in per_sample_gradients(model, cand.mr, cand.ct, loss, chunk_size, groups):
            rows.append(nn.functional.normalize(-g, dim=1) @ d.T)
    return torch.cat(rows).T.double().cpu().numpy()


# --------------------------------------------------------------------- scoring


def fedmia_z(sims: np.ndarray, target: int, drop_sigma: float = DROP_SIGMA,
             var_eps: float = VAR_EPS) -> np.ndarray:
    """FedMIA's standardised statistic per round and sample, ``[R, N]``: the target's
    similarity against the Gaussian null of the other clients' (step 2 of the module
    docstring); ``sims`` is ``[R, K, N]`` (rounds, clients, samples)."""
    sims = np.asarray(sims, dtype=np.float64)
    if sims.ndim != 3:
        raise ValueError(f"similarities must be [rounds, clients, samples]; got {sims.shape}")
    k = sims.shape[1]
    if not 0 <= target < k:
        raise ValueError(f"target client {target} out of range for {k} clients")
    if k < 2:
        raise ValueError("FedMIA needs at least 2 clients: the null comes from the others")
    own = sims[:, target, :]
    # Work with deviations from the target's own similarity: the same statistics, but when the
    # others equal the target exactly (SecAgg+: one aggregate for all) z is exactly 0, not
    # rounding noise that would give the ROC a random order.
    dev = np.delete(sims, target, axis=1) - own[:, None, :]
    mu = dev.mean(axis=1, keepdims=True)
    sd = np.sqrt(dev.var(axis=1, keepdims=True) + var_eps)
    keep = dev <= mu + drop_sigma * sd
    n_keep = keep.sum(axis=1)  # >= 1: not every value can lie above its own mean + 3σ
    mu2 = np.where(keep, dev, 0.0).sum(axis=1) / n_keep
    var2 = np.where(keep, (dev - mu2[:, None, :]) ** 2, 0.0).sum(axis=1) / n_keep
    return -mu2 / np.sqrt(var2 + var_eps)


def fedmia_scores(sims: np.ndarray, target: int, drop_sigma: float = DROP_SIGMA,
                  var_eps: float = VAR_EPS) -> np.ndarray:
    """Membership score of every sample for client ``target``: Φ(z) of :func:`fedmia_z`,
    averaged over rounds, ``[N]`` in [0, 1] (step 2 of the module docstring)."""
    return norm.cdf(fedmia_z(sims, target, drop_sigma, var_eps)).mean(axis=0)


def cosine_scores(sims: np.ndarray, target: int) -> np.ndarray:
    """The uncalibrated similarity to the target's update, averaged over rounds: what a server
    can still compute from the aggregate alone (membership in the federation as a whole)."""
    return np.asarray(sims, dtype=np.float64)[:, target, :].mean(axis=0)


# --------------------------------------------------------------------- evaluation


def roc_metrics(labels: np.ndarray, scores: np.ndarray,
                fpr_points: Sequence[float] = FPR_POINTS) -> dict[str, object]:
    """ROC-AUC, TPR at each FPR in ``fpr_points`` and the curve; NaN where a class is empty or
    where fewer than 1/FPR non-members cannot resolve that FPR."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    out: dict[str, object] = {"n_members": int(labels.sum()),
                              "n_nonmembers": int((~labels).sum())}
    if labels.all() or not labels.any():
        out.update({"auc": float("nan"), "fpr": np.array([]), "tpr": np.array([])})
        out.update({f"tpr@{p:g}": float("nan") for p in fpr_points})
        return out
    fpr, tpr, _ = roc_curve(labels, scores)
    out.update({"auc": float(roc_auc_score(labels, scores)), "fpr": fpr, "tpr": tpr})
    n_non = int((~labels).sum())
    for p in fpr_points:
        out[f"tpr@{p:g}"] = (float(tpr[max(int(np.sum(fpr < p)) - 1, 0)]) if n_non * p >= 1
                             else float("nan"))
    return out
