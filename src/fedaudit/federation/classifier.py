"""Paper 003's setting as a second attack target: a federated slice classifier.

Paper 003 (MedPFL) attacks the clients' updates of a federation that trains DLG's 4-layer CNN
(:class:`fedaudit.models.classifier.DLGConvNet`) on 32×32 medical image classes with FedAvg
(Fig. 3(a); Table II). Here the same centers train that network to tell an axial MR slice's
anatomical level (:mod:`fedaudit.data.levels`), through the same Flower code as the sCT
federation: the legacy-API :class:`~fedaudit.federation.strategy.AuditStrategy` (FedAvg, full
participation, replies sorted by center, the honest-but-curious server's log) driven by Flower's
``DefaultWorkflow`` on the in-process grid (:func:`fedaudit.federation.run.run_on_grid`).

Clients: a :class:`SliceClassifierClient` (Flower ``NumPyClient``) per center. Per round it
receives the global model, runs ``local_epochs`` epochs of plain mini-batch SGD on the
cross-entropy of its own slices (FedAvg's ClientUpdate, McMahan et al., "Communication-Efficient
Learning of Deep Networks from Decentralized Data", AISTATS 2017, Algorithm 1; a fresh optimiser
each round, no client state) and returns its update Δw_k = w_k − w_global with its number of
training slices n_k, the FedAvg weight. Every random choice of a round (batch order) comes from
``derive_seed(seed, "classifier", center, round)`` (:func:`fedaudit.runtime.derive_seed`), so the
same seed and thread count give bit-identical global models; :func:`local_batches` is the one
source of the batches a round used, so an evaluator can tell which slices an update saw.

The data stay in memory: centers' slices are built once in the driver and the in-process clients
read them (no Ray backend here). A defense that acts on the clients' replies (e.g. noise added to
the update) plugs in as Flower client mods (``client_mods``); one that changes the local training
itself (DP-SGD, :mod:`fedaudit.defenses.dp_sgd`) as ``local_training``: a factory of a
:class:`~fedaudit.federation.local.LocalTraining` per client round (its seed), whose Poisson lots
replace the permutation batches and whose clipped, noised step replaces plain SGD's.

Outputs in ``out_dir`` (:func:`train_classifier_federation`):

- ``model.pt``: the final global model (``{"config", "state_dict", ...}``; :func:`load_classifier`);
- ``global_models.npz``: the global model the server sent at the start of every round, keys
  ``round_{r:03d}/{parameter}`` (round 1 = the seeded initial model); :func:`load_global_models`;
- ``server_log/``: the server's view per round (:mod:`fedaudit.federation.server_log`: global
  model and each client's update), what a gradient-inversion attack on the updates reads;
- ``history.tsv``: per round and center: slices, train loss and accuracy (running, over the
  round's local steps), validation loss and accuracy of the model the round produced, timings;
- ``accuracy.tsv``: the final model's accuracy per split (val, test) and center, beside the
  chance reference: the accuracy of always answering the training slices' majority class;
- ``samples.tsv``: every training sample's center, index in its center's tensors, patient,
  axial index and label: ground truth for the evaluator, not part of any attacker's view;
- ``summary.json``: settings, timings, class counts and the pooled accuracies.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from flwr.client import Client, NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import Config, Context, NDArrays, Scalar
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.workflow import DefaultWorkflow
from torch import nn

from fedaudit.atomic import save_npz, write_csv, write_text
from fedaudit.data.levels import slice_dataset
from fedaudit.data.slices import load_volume
from fedaudit.federation.local import LocalTraining
from fedaudit.federation.run import run_on_grid
from fedaudit.federation.strategy import AuditStrategy, FederationError
from fedaudit.models.classifier import DLGConvNet
from fedaudit.models.weights import exchanged_names, get_arrays, set_arrays, subtract
from fedaudit.runtime import derive_seed
from fedaudit.torch_files import load_torch, save_torch

log = logging.getLogger(__name__)

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


@dataclass(frozen=True)
class ClassifierSettings:
    """A classifier federation's settings (see :func:`train_classifier_federation`)."""

    rounds: int = 5
    local_epochs: int = 3
    lr: float = 0.05
    batch_size: int = 8
    classes: int = 4
    size: int = 32
    seed: int = 0
    init: str = "dlg"
    max_slices_per_volume: int | None = None


_DEFAULT = ClassifierSettings()


def initial_classifier(seed: int, classes: int = 4, size: int = 32,
                       init: str = "dlg") -> DLGConvNet:
    """The model the server sends in round 1: ``torch.manual_seed(seed)``, then
    ``DLGConvNet(classes, 1, size, init=init)``."""
    torch.manual_seed(seed)
    return DLGConvNet(num_classes=classes, in_channels=1, size=size, init=init)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - what a client mod may draw from
    torch.manual_seed(seed)


def local_batches(num_samples: int, *, epochs: int, batch_size: int, seed: int
                  ) -> Iterator[torch.Tensor]:
    """Sample indices of one round's local steps, in order: ``epochs`` passes, each a fresh
    permutation from ``torch.Generator().manual_seed(seed)``, cut into batches of
    ``batch_size`` (the last one smaller)."""
    if batch_size < 1 or epochs < 1:
        raise ValueError(f"batch_size and epochs must be >= 1; got {batch_size}, {epochs}")
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(epochs):
        order = torch.randperm(num_samples, generator=gen)
        yield from order.split(batch_size)


def train_local_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                           lr: float, batch_size: int, seed: int,
                           private: LocalTraining | None = None) -> dict[str, float | str]:
    """Plain SGD on the mean cross-entropy over the batches of :func:`local_batches` (FedAvg's
    ClientUpdate, McMahan et al. 2017, Algorithm 1). Returns the mean batch loss, the running
    accuracy over the samples seen (before each step) and the time taken.

    With ``private`` (DP-SGD) the batches are its Poisson lots (``index_batches``), every step
    is its clipped and noised one, the statistics it withholds are NaN and its report (ε's
    events) is added."""
    if x.shape[0] == 0:
        raise RuntimeError("no training slices: every training volume has an empty head mask")
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    net = model
    if private is not None:
        net, opt = private.attach(model, opt, batch_size)
        batches: Iterable[torch.Tensor] = (
            idx for _ in range(epochs) for idx in private.index_batches(x.shape[0], batch_size))
    else:
        batches = local_batches(x.shape[0], epochs=epochs, batch_size=batch_size, seed=seed)
    loss_sum, correct, seen, steps = 0.0, 0, 0, 0
    report: dict[str, float | str] = {}
    t0 = time.perf_counter()
    try:
        for idx in batches:
            opt.zero_grad(set_to_none=True)
            steps += 1
            if idx.numel() == 0:  # an empty Poisson lot: a step of pure noise
                private.step(opt)  # type: ignore[union-attr]
                continue
            logits = net(x[idx])
            loss = nn.functional.cross_entropy(logits, y[idx])
            loss.backward()
            if private is None:
                opt.step()
            else:
                private.step(opt)
            loss_sum += float(loss.detach())
            correct += int((logits.detach().argmax(1) == y[idx]).sum())
            seen += idx.numel()
    finally:
        if private is not None:
            report = private.detach()
    stats: dict[str, float | str] = {"train_loss": loss_sum / max(steps, 1),
                                     "train_acc": correct / max(seen, 1),
                                     "train_seconds": time.perf_counter() - t0}
    if private is not None:
        stats.update({k: float("nan") for k in private.withheld if k in stats})
        stats.update({k: v for k, v in report.items() if k != "num_examples"})
    return stats


@torch.inference_mode()
def evaluate_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        batch_size: int = 256) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)`` (NaN when empty)."""
    if x.shape[0] == 0:
        return {"loss": float("nan"), "accuracy": float("nan")}
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, x.shape[0], batch_size):
        logits = model(x[i:i + batch_size])
        loss += float(nn.functional.cross_entropy(logits, y[i:i + batch_size], reduction="sum"))
        correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    model.train()
    return {"loss": loss / x.shape[0], "accuracy": correct / x.shape[0]}


class SliceClassifierClient(NumPyClient):
    """One center's client (module docstring): local SGD on its slices, returns Δw and n_k.

    ``train`` and ``val`` are ``(x, y)`` tensor pairs from
    :func:`fedaudit.data.levels.slice_dataset`; ``val`` may be empty.
    """

    def __init__(self, center: str, train: tuple[torch.Tensor, torch.Tensor],
                 val: tuple[torch.Tensor, torch.Tensor], settings: ClassifierSettings,
                 local_training: Callable[[int], LocalTraining] | None = None) -> None:
        self.center = center
        self.train, self.val = train, val
        self.settings = settings
        self.local_training = local_training

    def _model(self, parameters: NDArrays) -> DLGConvNet:
        s = self.settings
        model = DLGConvNet(num_classes=s.classes, in_channels=1, size=s.size, init="torch")
        set_arrays(model, parameters)
        return model

    def fit(self, parameters: NDArrays, config: Config
            ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        rnd = int(config["round"])
        s = self.settings
        seed = derive_seed(s.seed, "classifier", self.center, rnd)
        _seed_everything(seed)
        model = self._model(parameters)
        private = None if self.local_training is None else self.local_training(seed)
        stats = train_local_classifier(model, *self.train, epochs=s.local_epochs, lr=s.lr,
                                       batch_size=s.batch_size, seed=seed, private=private)
        update = subtract(get_arrays(model), parameters)
        n = int(self.train[0].shape[0])
        log.info("classifier client %s round %d: %d slices, loss %.4f, accuracy %.3f",
                 self.center, rnd, n, stats["train_loss"], stats["train_acc"])
        return update, n, {"center": self.center, **stats}

    def evaluate(self, parameters: NDArrays, config: Config
                 ) -> tuple[float, int, dict[str, Scalar]]:
        n = int(self.val[0].shape[0])
        if n == 0:
            return 0.0, 0, {"center": self.center}
        res = evaluate_classifier(self._model(parameters), *self.val)
        return res["loss"], n, {"center": self.center, "val_loss": res["loss"],
                                "val_acc": res["accuracy"], "val_slices": n}


def _server_app(strategy: AuditStrategy, rounds: int) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid, context: Context) -> None:
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds),
                               strategy=strategy)
        DefaultWorkflow()(grid, legacy)

    return app


def _center_data(folders: Mapping[str, Sequence[str | os.PathLike[str]]], centers: list[str],
                 s: ClassifierSettings, purpose: str, cap: int | None
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor, list[dict[str, object]]]]:
    out = {}
    for c in centers:
        vols = [load_volume(f) for f in folders.get(c, ())]
        x, y, _, prov = slice_dataset(vols, classes=s.classes, size=s.size,
                                      max_slices_per_volume=cap,
                                      seed=derive_seed(s.seed, "classifier", purpose, c))
        out[c] = (x, y, prov)
    return out


def load_global_models(path: str | os.PathLike[str]) -> dict[int, dict[str, np.ndarray]]:
    """``global_models.npz`` as ``{round: {parameter name: array}}`` (rounds from 1)."""
    out: dict[int, dict[str, np.ndarray]] = {}
    with np.load(path) as npz:
        for key in npz.files:
            rnd, name = key.split("/", 1)
            out.setdefault(int(rnd.removeprefix("round_")), {})[name] = npz[key]
    return dict(sorted(out.items()))


def load_classifier(path: str | os.PathLike[str]) -> DLGConvNet:
    """The final model of a classifier federation (``model.pt``)."""
    blob = load_torch(path)
    model = DLGConvNet(**{**blob["config"], "init": "torch"})
    model.load_state_dict(blob["state_dict"])
    model.init = blob["config"]["init"]
    return model


def _accuracy_rows(model: DLGConvNet, split: str,
                   data: Mapping[str, tuple[torch.Tensor, torch.Tensor, list]],
                   majority: int) -> list[dict[str, Any]]:
    rows = []
    parts = [(c, x, y) for c, (x, y, _) in data.items() if x.shape[0]]
    if parts:
        parts.append(("all", torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])))
    for c, x, y in parts:
        res = evaluate_classifier(model, x, y)
        rows.append({"split": split, "center": c, "slices": int(x.shape[0]),
                     "accuracy": res["accuracy"], "loss": res["loss"],
                     "majority_class_accuracy": float((y == majority).double().mean())})
    return rows


def train_classifier_federation(
        train_folders: Mapping[str, Sequence[str | os.PathLike[str]]], *,
        out_dir: str | os.PathLike[str], rounds: int = _DEFAULT.rounds,
        local_epochs: int = _DEFAULT.local_epochs, lr: float = _DEFAULT.lr,
        batch_size: int = _DEFAULT.batch_size, classes: int = _DEFAULT.classes,
        seed: int = _DEFAULT.seed,
        val_folders: Mapping[str, Sequence[str | os.PathLike[str]]] | None = None,
        test_folders: Mapping[str, Sequence[str | os.PathLike[str]]] | None = None,
        size: int = _DEFAULT.size, init: str = _DEFAULT.init,
        max_slices_per_volume: int | None = _DEFAULT.max_slices_per_volume,
        threads: int = 1, client_mods: Sequence[Any] = (),
        local_training: Callable[[int], LocalTraining] | None = None) -> dict[str, Any]:
    """Train DLG's CNN on the slice-level task with FedAvg through Flower; write ``out_dir``.

    ``train_folders`` (and ``val_folders``, ``test_folders``): center -> preprocessed patient
    folders (``mr/ct/mask.nii.gz``). Every center in ``train_folders`` is a client and trains in
    every round; ``val_folders`` give per-round validation in each client's ``evaluate`` and,
    with ``test_folders``, the final accuracies. ``max_slices_per_volume`` caps each training
    volume's slices (a seeded subset, fixed for the whole run). ``threads`` fixes torch's
    intra-op threads (the same count is needed for bit-identical results). ``client_mods``:
    Flower client mods wrapped around every client (a defense acting on the replies);
    ``local_training``: ``seed -> LocalTraining`` for a defense that changes the local training
    (DP-SGD), called by every client every round with its round seed.

    Defaults (measured on the 14-patient demo, 5 rounds, 1 thread: ≈ 8 s, test accuracy 0.78
    against 0.26 for the majority class): SGD lr 0.05, batch 8, 3 local epochs, DLG's
    U(−0.5, 0.5) initialisation (with PyTorch's default initialisation the Sigmoid network stays
    at chance for the same budget).

    Returns ``{"seconds", "history", "accuracy", "summary"}``: training time, the frames written
    to ``history.tsv`` and ``accuracy.tsv``, and ``summary.json``'s content. Raises
    :class:`~fedaudit.federation.strategy.FederationError` if a round did not complete.
    """
    s = ClassifierSettings(rounds=int(rounds), local_epochs=int(local_epochs), lr=float(lr),
                           batch_size=int(batch_size), classes=int(classes), size=int(size),
                           seed=int(seed), init=init,
                           max_slices_per_volume=max_slices_per_volume)
    if s.rounds < 1:
        raise ValueError(f"rounds must be >= 1; got {s.rounds}")
    centers = sorted(train_folders)
    if not centers:
        raise ValueError("train_folders names no center")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        train = _center_data(train_folders, centers, s, "train", s.max_slices_per_volume)
        for c, (x, _, _) in train.items():
            if x.shape[0] == 0:
                raise ValueError(f"center {c}: no training slice with head voxels")
        val = _center_data(val_folders or {}, centers, s, "val", None)
        test = _center_data(test_folders or {}, sorted(test_folders or {}), s, "test", None)
        model = initial_classifier(s.seed, s.classes, s.size, s.init)
        names = exchanged_names(model)
        globals_by_round: dict[int, list[np.ndarray]] = {1: get_arrays(model)}

        def on_round_end(rnd: int, arrays: list[np.ndarray], _hist: list[dict]) -> None:
            globals_by_round[rnd + 1] = [a.copy() for a in arrays]

        strategy = AuditStrategy(
            centers=centers, names=names, initial=globals_by_round[1], aggregation="fedavg",
            first_round=1, total_rounds=s.rounds, log_dir=str(out / "server_log"),
            log_rounds="all", on_round_end=on_round_end)
        clients = {c: SliceClassifierClient(c, train[c][:2], val[c][:2], s, local_training)
                   for c in centers}

        def client_fn(context: Context) -> Client:
            return clients[centers[int(context.node_config["partition-id"])]].to_client()

        log.info("classifier federation: centers %s, %d rounds, %s slices", ", ".join(centers),
                 s.rounds, {c: int(train[c][0].shape[0]) for c in centers})
        t0 = time.perf_counter()
        errors = run_on_grid(len(centers), _server_app(strategy, s.rounds),
                             ClientApp(client_fn=client_fn, mods=list(client_mods)))
        seconds = time.perf_counter() - t0
        if errors or strategy.error or strategy.completed_round != s.rounds:
            detail = "\n".join(errors) or strategy.error or ""
            raise FederationError(f"classifier federation stopped after round "
                                  f"{strategy.completed_round} of {s.rounds}. {detail}".strip())
        set_arrays(model, strategy.global_arrays)
        result = _write_outputs(out, s, model, names, globals_by_round, strategy.history,
                                train, val, test, seconds)
    finally:
        torch.set_num_threads(previous_threads)
    return result


def _write_outputs(out: Path, s: ClassifierSettings, model: DLGConvNet, names: list[str],
                   globals_by_round: dict[int, list[np.ndarray]], history: list[dict],
                   train: dict, val: dict, test: dict, seconds: float) -> dict[str, Any]:
    save_torch({"config": model.config(), "state_dict": model.state_dict(),
                "settings": asdict(s), "rounds": s.rounds}, out / "model.pt")
    save_npz(out / "global_models.npz",
             **{f"round_{r:03d}/{n}": a for r in range(1, s.rounds + 1)
                for n, a in zip(names, globals_by_round[r], strict=True)})
    hist = pd.DataFrame(history)
    write_csv(hist, out / "history.tsv", sep="\t", index=False)
    counts = {c: np.bincount(train[c][1].numpy(), minlength=s.classes).tolist() for c in train}
    pooled = np.sum([counts[c] for c in counts], axis=0)
    majority = int(np.argmax(pooled))
    rows = (_accuracy_rows(model, "train", train, majority)
            + _accuracy_rows(model, "val", val, majority)
            + _accuracy_rows(model, "test", test, majority))
    acc = pd.DataFrame(rows, columns=["split", "center", "slices", "accuracy", "loss",
                                      "majority_class_accuracy"])
    write_csv(acc, out / "accuracy.tsv", sep="\t", index=False)
    write_csv(pd.DataFrame([{"center": c, "index": i, **p, "label": int(train[c][1][i])}
                            for c in train for i, p in enumerate(train[c][2])]),
              out / "samples.tsv", sep="\t", index=False)
    pooled_acc = {r["split"]: {k: r[k] for k in ("slices", "accuracy", "majority_class_accuracy")}
                  for r in rows if r["center"] == "all"}
    summary = {"settings": asdict(s), "seconds": seconds, "centers": sorted(train),
               "class_counts": counts, "majority_class": majority, "chance": 1.0 / s.classes,
               "accuracy": pooled_acc}
    write_text(json.dumps(summary, indent=2) + "\n", out / "summary.json")
    return {"seconds": seconds, "history": hist, "accuracy": acc, "summary": summary}
