"""The paper's 2-D UNet: size, shapes, input checks, memory-format independence."""

from __future__ import annotations

import pytest
import torch

from fedaudit.models import UNet2D, count_parameters


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout  # weights + bias


def _bn(c: int) -> int:
    return 2 * c  # affine weight + bias (running stats are buffers, not parameters)


def _expected_count(base: int, cin: int = 1, cout: int = 1) -> int:
    """Layer-by-layer count of the architecture in paper 000, independent of the model code."""
    b = base
    n = 0
    prev = cin
    for w in (b, 2 * b, 4 * b, 8 * b):  # encoder: two conv+BN per level
        n += _conv(prev, w, 3) + _bn(w) + _conv(w, w, 3) + _bn(w)
        prev = w
    n += _conv(8 * b, 16 * b, 3) + _bn(16 * b)  # bottleneck: one conv+BN
    prev = 16 * b
    for w in (8 * b, 4 * b, 2 * b, b):  # decoder: transposed conv 4x4, then one conv+BN
        n += _conv(prev, w, 4) + _conv(2 * w, w, 3) + _bn(w)
        prev = w
    return n + _conv(b, cout, 1)


def test_paper_size_at_base_64() -> None:
    # Paper 000, "Federated Learning Framework": approximately 2.68e7 trainable parameters.
    n = count_parameters(UNet2D(base=64))
    assert abs(n - 2.68e7) / 2.68e7 < 0.01
    assert n == _expected_count(64)


def test_count_matches_hand_computation_at_base_8() -> None:
    assert count_parameters(UNet2D(base=8)) == _expected_count(8)
    assert count_parameters(UNet2D(in_channels=2, out_channels=3, base=8)) == _expected_count(
        8, cin=2, cout=3)


def test_count_ignores_frozen_parameters() -> None:
    model = UNet2D(base=8)
    frozen = sum(p.numel() for p in model.head.parameters())
    for p in model.head.parameters():
        p.requires_grad_(False)
    assert count_parameters(model) == _expected_count(8) - frozen


def test_output_shape_equals_input_shape() -> None:
    torch.manual_seed(0)
    model = UNet2D(base=8).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 64, 64)).shape == (1, 1, 64, 64)
        assert model(torch.rand(2, 1, 32, 48)).shape == (2, 1, 32, 48)


@pytest.mark.parametrize("shape", [(1, 1, 60, 60), (1, 1, 64, 40)])
def test_size_not_divisible_by_16_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="divisible by 16"):
        UNet2D(base=8)(torch.rand(*shape))


def test_wrong_channel_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="input channel"):
        UNet2D(base=8)(torch.rand(1, 2, 32, 32))


def test_output_is_linear_not_squashed() -> None:
    # The target is unit-range CT; a sigmoid/ReLU at the output would hide errors from the loss.
    torch.manual_seed(0)
    model = UNet2D(base=8).eval()
    with torch.no_grad():
        model.head.bias.fill_(-5.0)
        y = model(torch.rand(1, 1, 32, 32))
    assert (y < 0).any()


def test_channels_last_gives_the_same_output() -> None:
    torch.manual_seed(0)
    model = UNet2D(base=8).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == ref.shape
    torch.testing.assert_close(out.contiguous(), ref, atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter() -> None:
    # A layer left out of the forward pass would still be counted but never trained.
    torch.manual_seed(0)
    model = UNet2D(base=8).train()
    model(torch.rand(2, 1, 32, 32)).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


def _default_keys() -> list[str]:
    """The state_dict names of the BatchNorm UNet, written out from the layout (conv at index 0
    and 3 of an encoder block, BatchNorm at 1 and 4; conv 0, BatchNorm 1 in the bottleneck and
    decoders): server logs and checkpoints are keyed by these names."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys: list[str] = []
    for i in range(4):
        for conv, norm in ((0, 1), (3, 4)):
            keys += [f"encoders.{i}.{conv}.{k}" for k in ("weight", "bias")]
            keys += [f"encoders.{i}.{norm}.{k}" for k in bn]
    keys += ["bottleneck.0.weight", "bottleneck.0.bias"] + [f"bottleneck.1.{k}" for k in bn]
    for i in range(4):
        keys += [f"ups.{i}.weight", f"ups.{i}.bias"]
    for i in range(4):
        keys += [f"decoders.{i}.0.weight", f"decoders.{i}.0.bias"]
        keys += [f"decoders.{i}.1.{k}" for k in bn]
    return keys + ["head.weight", "head.bias"]


def test_default_state_dict_names_are_unchanged() -> None:
    assert sorted(UNet2D(base=2).state_dict()) == sorted(_default_keys())
    assert sorted(UNet2D(base=2, norm="batch").state_dict()) == sorted(_default_keys())


def test_norm_none_has_no_batchnorm_and_keeps_the_convolution_names() -> None:
    bn_free = UNet2D(base=4, norm="none")
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in bn_free.modules())
    default = UNet2D(base=4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in default.modules())
    # every BN-free tensor has the same name and shape as in the BatchNorm model
    ref = default.state_dict()
    assert {k: v.shape for k, v in bn_free.state_dict().items()} == \
        {k: ref[k].shape for k in bn_free.state_dict()}
    assert count_parameters(bn_free) == count_parameters(default) - sum(
        m.weight.numel() + m.bias.numel() for m in default.modules()
        if isinstance(m, torch.nn.BatchNorm2d))
    torch.manual_seed(0)
    with torch.no_grad():
        assert bn_free.train()(torch.rand(1, 1, 16, 16)).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="norm must be one of"):
        UNet2D(base=4, norm="layer")
