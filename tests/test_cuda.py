"""The GPU path agrees with the CPU path (skipped without CUDA; CI has none).

Run on a GPU machine by ``benchmarks/gpu_check.sh``. The references are the CPU results of the
same code: training in fp32 on CUDA must take the CPU's steps, bf16 autocast must stay close to
fp32 and keep the exchanged weights in fp32, and the attacks' GPU numbers must be the CPU's.
Tolerances: cuDNN convolutions run in TF32 by default (10-bit mantissa, relative error ~1e-3),
and bf16 keeps 8 significand bits (~4e-3).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fedaudit.attacks.dlg.inversion import DLGConfig, client_gradient, reconstruct
from fedaudit.attacks.fedmia.algorithm import Candidates, similarity_matrix, trainable_names
from fedaudit.attacks.gradient_inversion import client_gradient as task_gradient
from fedaudit.attacks.gradient_inversion import extract_label
from fedaudit.data.slices import Volume
from fedaudit.federation.local import LocalConfig, train_local
from fedaudit.models.classifier import DLGConvNet
from fedaudit.models.tiny import TinyMLPTranslator
from fedaudit.models.unet import UNet2D

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _volumes(n: int = 2, size: int = 32) -> list[Volume]:
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:size, :size, :size].astype(np.float32) / size - 0.5
    mask = (z / 0.42) ** 2 + (y / 0.4) ** 2 + (x / 0.36) ** 2 < 1
    vols = []
    for i in range(n):
        mr = np.where(mask, 0.5 + 0.2 * np.sin(8 * x + rng.random()), 0).astype(np.float32)
        ct = np.where(mask, 40 + 300 * np.sin(8 * x + 1), -1000).astype(np.float32)
        vols.append(Volume(f"v{i}", mr, ct, mask))
    return vols


def _update(model: torch.nn.Module, start: torch.nn.Module) -> torch.Tensor:
    return torch.cat([(p.detach().cpu() - q.detach().cpu()).reshape(-1)
                      for p, q in zip(model.parameters(), start.parameters(), strict=True)])


def _train(device: torch.device, amp: bool) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    torch.manual_seed(0)
    start = UNet2D(base=4)
    model = copy.deepcopy(start)
    cfg = LocalConfig(lr=1e-3, batch_size=4, max_slices_per_volume=6, augment=False,
                      proximal_mu=3.0)
    stats = train_local(model, _volumes(), cfg, seed=1, device=device, amp=amp)
    return model, start, stats


def test_fp32_training_on_cuda_takes_the_cpu_steps() -> None:
    cpu, start, s_cpu = _train(CPU, amp=False)
    gpu, _, s_gpu = _train(CUDA, amp=False)
    u_cpu, u_gpu = _update(cpu, start), _update(gpu, start)
    cos = torch.nn.functional.cosine_similarity(u_cpu, u_gpu, dim=0)
    assert cos > 0.99, f"update direction differs between CPU and CUDA: cosine {cos:.4f}"
    assert s_gpu["train_loss"] == pytest.approx(s_cpu["train_loss"], rel=1e-2)


def test_bf16_training_keeps_fp32_weights_channels_last_and_the_fp32_loss() -> None:
    fp32, start, s32 = _train(CUDA, amp=False)
    bf16, _, s16 = _train(CUDA, amp=True)
    assert all(p.dtype == torch.float32 for p in bf16.state_dict().values()
               if p.is_floating_point()), "exchanged weights must stay float32 under autocast"
    conv = next(p for p in bf16.parameters() if p.ndim == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert np.isfinite(s16["train_loss"])
    assert s16["train_loss"] == pytest.approx(s32["train_loss"], rel=0.05)
    cos = torch.nn.functional.cosine_similarity(_update(bf16, start), _update(fp32, start), dim=0)
    assert cos > 0.9, f"bf16 update strays from the fp32 update: cosine {cos:.3f}"


def test_fedmia_similarities_on_cuda_match_cpu() -> None:
    torch.manual_seed(0)
    model = UNet2D(base=4)
    mr, ct = torch.rand(6, 1, 32, 32), torch.rand(6, 1, 32, 32)
    cand = Candidates(mr, ct, *([None] * 4))
    p = sum(dict(model.named_parameters())[n].numel() for n in trainable_names(model))
    updates = [torch.randn(p, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    cpu = similarity_matrix(model, updates, cand, chunk_size=4)
    gpu = similarity_matrix(copy.deepcopy(model).to(CUDA), updates, cand, chunk_size=4)
    np.testing.assert_allclose(gpu, cpu, atol=2e-3)


def test_dlg_on_cuda_reconstructs_like_cpu() -> None:
    torch.manual_seed(0)
    net = TinyMLPTranslator(16, 32)
    mr, ct = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    mask = np.ones((1, 1, 16, 16), bool)
    shared = client_gradient(net, mr, ct)
    cfg = DLGConfig(optimizer="adam", iterations=60, snapshots=2, target="known")
    cpu = reconstruct(net, shared, mask, cfg, ct=ct.numpy(), seed=3, device=CPU,
                      progress=False)
    gpu = reconstruct(copy.deepcopy(net), shared, mask, cfg, ct=ct.numpy(), seed=3,
                      device=CUDA, progress=False)
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=1e-2, atol=1e-6)
    np.testing.assert_allclose(gpu.reconstruction, cpu.reconstruction, atol=1e-3)


def test_idlg_label_extraction_on_cuda() -> None:
    torch.manual_seed(0)
    net = DLGConvNet(num_classes=4).to(CUDA)
    x = torch.rand(1, 1, 32, 32, device=CUDA)
    for label in range(4):
        shared = task_gradient(net, x, torch.tensor([label], device=CUDA),
                               task="classification")
        assert extract_label(shared, net) == label
