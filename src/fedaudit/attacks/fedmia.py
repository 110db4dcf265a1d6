"""FedMIA membership inference against the honest-but-curious server's log.

Source: Zhu, Li, Gu, Yao, Fan, Han, "FedMIA: An Effective Membership Inference Attack Exploiting
'All for One' Principle in Federated Learning", CVPR 2025; as applied by paper 000
("Membership Inference", steps 1-3, Eq. 1, Fig. 3) and DESIGN.md (FedMIA facts).

1. Measurement (attacker; recorded once): for round r the server holds the global model w^(r)
   it sent and each client's update Δw_k^(r) = w_k^(r) − w^(r) (paper 000 Eq. 1). For every
   candidate sample i (one MR/CT slice) the attacker takes the gradient g_i of the clients' loss
   at w^(r) (training mode, as the clients compute it) and forms the similarity
   s_k(i) = cos(−g_i, Δw_k) over all trainable parameters: a clients × samples matrix per round.
   The gradient enters with its sign flipped because Δw_k is a descent step: a sample the client
   trained on pushes Δw_k along −g_i, so members score high, as FedMIA's scores require.
2. Scoring (attacker; offline): for target client t and sample i, the non-member null is a
   Gaussian fitted to the other clients' similarities for the same sample (mean, population
   variance + 1e-8), refitted after dropping values above μ + 3σ (possible members of another
   client); the score is Φ((s_t(i) − μ)/σ), averaged over the rounds used.
3. Evaluation (evaluator; holds the ground truth): members are the target's training slices,
   non-members the target's test slices and the external center's, balanced by a seeded draw;
   ROC-AUC and TPR at fixed FPR (``tpr[sum(fpr < thr) − 1]``, as FedMIA's code reads it), and
   the same at patient level (a patient's score = mean over its slices), the unit of privacy in
   medicine.

Under SecAgg+ the server holds only the aggregate, so every client's "update" is the aggregate:
the same pipeline then compares a client with identical copies of itself.
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
FPR_POINTS = (0.001, 0.01)


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


def per_sample_gradients(model: nn.Module, mr: torch.Tensor, ct: torch.Tensor, loss: str = "l1",
                         chunk_size: int = 32) -> Iterator[torch.Tensor]:
    """Flattened gradients ``[n, P]`` of the loss of each single slice, chunk by chunk.

    ``torch.func`` (functional_call + vmap(grad)): BatchNorm in training mode normalises each
    slice by its own statistics, exactly what a batch of one does; its running-statistics update
    (a side effect that does not change the gradient) is switched off so vmap can run.
    """
    fmodel = copy.deepcopy(model)
    torch.func.replace_all_batch_norm_modules_(fmodel)
    fmodel.train()
    names = trainable_names(fmodel)
    params = {n: p.detach() for n, p in fmodel.named_parameters() if n in names}
    loss_fn = LOSSES[loss]

    def one(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(fmodel, p, (x[None],)), y[None])

    batched = vmap(grad(one), in_dims=(None, 0, 0))
    device = next(fmodel.parameters()).device
    for i in range(0, mr.shape[0], chunk_size):
        x = mr[i:i + chunk_size].to(device, non_blocking=True)
        y = ct[i:i + chunk_size].to(device, non_blocking=True)
        g = batched(params, x, y)
        yield torch.cat([g[n].reshape(x.shape[0], -1) for n in names], dim=1)


def per_sample_gradients_loop(model: nn.Module, mr: torch.Tensor, ct: torch.Tensor,
                              loss: str = "l1") -> torch.Tensor:
    """Reference implementation: one ``backward()`` per slice on a copy in training mode."""
    out = []
    for i in range(mr.shape[0]):
        m = copy.deepcopy(model).train()
        m.zero_grad(set_to_none=True)
        LOSSES[loss](m(mr[i:i + 1]), ct[i:i + 1]).backward()
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
                      *, loss: str = "l1", chunk_size: int = 32) -> np.ndarray:
    """s_k(i) = cos(−g_i, Δw_k): ``[clients, samples]`` float64 (step 1 of the module docstring).

    ``model`` must hold the round's global weights (it is not modified); ``updates`` are flat
    Δw_k as from :func:`flat_update`. Gradients are never held for the whole set, only a chunk.
    """
    device = next(model.parameters()).device
    d = torch.stack([u.to(device) for u in updates])
    d = nn.functional.normalize(d, dim=1)
    rows = []
    with torch.no_grad():
        for g in per_sample_gradients(model, cand.mr, cand.ct, loss, chunk_size):
            rows.append(nn.functional.normalize(-g, dim=1) @ d.T)
    return torch.cat(rows).T.double().cpu().numpy()


# --------------------------------------------------------------------- scoring


def fedmia_scores(sims: np.ndarray, target: int, drop_sigma: float = DROP_SIGMA,
                  var_eps: float = VAR_EPS) -> np.ndarray:
    """Membership score of every sample for client ``target``: ``sims`` is ``[R, K, N]``
    (rounds, clients, samples); returns ``[N]`` in [0, 1] (step 2 of the module docstring)."""
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
    score = norm.cdf(-mu2 / np.sqrt(var2 + var_eps))
    return score.mean(axis=0)


def cosine_scores(sims: np.ndarray, target: int) -> np.ndarray:
    """The uncalibrated similarity to the target's update, averaged over rounds: what a server
    can still compute from the aggregate alone (membership in the federation as a whole)."""
    return np.asarray(sims, dtype=np.float64)[:, target, :].mean(axis=0)


# --------------------------------------------------------------------- evaluation


def balanced_indices(members: np.ndarray, nonmembers: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Equal numbers of members and non-members (the smaller group whole, a seeded draw of the
    larger), so AUC and TPR@FPR compare like with like."""
    n = min(members.size, nonmembers.size)
    pick = [np.sort(rng.choice(g, size=n, replace=False)) if g.size > n else np.sort(g)
            for g in (members, nonmembers)]
    return pick[0], pick[1]


def roc_metrics(labels: np.ndarray, scores: np.ndarray,
                fpr_points: Sequence[float] = FPR_POINTS) -> dict[str, object]:
    """ROC-AUC, TPR at each FPR in ``fpr_points`` and the curve; NaN where a class is empty."""
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
    for p in fpr_points:
        out[f"tpr@{p:g}"] = float(tpr[max(int(np.sum(fpr < p)) - 1, 0)])
    return out


def patient_scores(scores: np.ndarray, patients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean score per patient (patients in sorted order)."""
    names = np.unique(patients)
    return names, np.array([scores[patients == p].mean() for p in names])
