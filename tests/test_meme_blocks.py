"""MEME mixed blocks: ratio 0 / 1 equal the pure blocks, a mix equals a hand-written
computation, named validation errors; the expert family's shapes and per-sample independence."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtl_diffusion.meme import (
    ConvBlock,
    MixedBlock,
    MixedUNet,
    PooledAttentionBlock,
    attention_channels,
)


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter (zero-initialised ones included) random, so outputs are not just x."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return module


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy parameter by parameter, by name (the pure block must have the same names)."""
    own = dict(target.named_parameters())
    given = dict(source.named_parameters())
    assert own.keys() == given.keys()
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(given[name])


def attention_by_hand(x: torch.Tensor, qkv_w, qkv_b, proj_w, proj_b, heads: int) -> torch.Tensor:
    """Multi-head softmax attention over (B, N, D) tokens, written out."""
    b, n, d = x.shape
    q, k, v = (x @ qkv_w.T + qkv_b).split(d, dim=-1)
    out = torch.empty_like(x)
    hd = d // heads
    for h in range(heads):
        cols = slice(h * hd, (h + 1) * hd)
        scores = q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(hd)
        out[..., cols] = torch.softmax(scores, dim=-1) @ v[..., cols]
    return out @ proj_w.T + proj_b


X = torch.randn(3, 16, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("depthwise", [True, False])
def test_ratio_zero_is_the_pure_conv_block(depthwise: bool) -> None:
    mixed = randomize(MixedBlock(16, 0.0, depthwise=depthwise, num_groups=4))
    pure = ConvBlock(16, depthwise=depthwise, num_groups=4)
    copy_weights(mixed, pure)
    assert mixed.attn is None and mixed.conv_channels == 16
    torch.testing.assert_close(mixed(X), pure(X), rtol=0, atol=0)


@pytest.mark.parametrize("pool", [1, 2, 4])
def test_ratio_one_is_the_pure_attention_block(pool: int) -> None:
    mixed = randomize(MixedBlock(16, 1.0, num_heads=4, pool=pool, num_groups=4))
    pure = PooledAttentionBlock(16, num_heads=4, pool=pool, num_groups=4)
    copy_weights(mixed, pure)
    assert mixed.conv is None and mixed.attn_channels == 16
    torch.testing.assert_close(mixed(X), pure(X), rtol=0, atol=0)


def test_a_mix_equals_the_computation_written_out() -> None:
    block = randomize(MixedBlock(16, 0.25, num_heads=2, pool=2, num_groups=4))
    assert (block.conv_channels, block.attn_channels) == (12, 4)
    h = F.group_norm(X, 4, block.norm.weight, block.norm.bias, eps=block.norm.eps)
    conv = F.conv2d(F.silu(h[:, :12]), block.conv.weight, block.conv.bias, padding=1, groups=12)
    a = h[:, 12:]
    pooled = a[:, :, 0::2, 0::2] + a[:, :, 1::2, 0::2] + a[:, :, 0::2, 1::2] + a[:, :, 1::2, 1::2]
    tokens = (pooled / 4).flatten(2).transpose(1, 2)  # (B, 16 tokens, 4)
    at = block.attn
    out = attention_by_hand(tokens, at.qkv.weight, at.qkv.bias, at.proj.weight, at.proj.bias, 2)
    up = out.transpose(1, 2).reshape(3, 4, 4, 4).repeat_interleave(2, 2).repeat_interleave(2, 3)
    merged = F.conv2d(torch.cat([conv, up], 1), block.merge.weight, block.merge.bias)
    torch.testing.assert_close(block(X), X + merged, rtol=1e-5, atol=1e-5)


def test_zero_init_blocks_start_as_identity() -> None:
    for block in (MixedBlock(16, 0.5, num_groups=4), ConvBlock(16, num_groups=4)):
        torch.testing.assert_close(block(X), X, rtol=0, atol=0)


def test_attention_channels_round_to_multiples_of_the_heads() -> None:
    assert attention_channels(32, 0.5, 4) == 16
    assert attention_channels(32, 0.3, 4) == 8  # 9.6 -> nearest multiple of 4
    assert attention_channels(32, 0.0, 4) == 0
    assert attention_channels(30, 0.0, 4) == 0  # no attention: heads need not divide


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"ratio": -0.1}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"ratio": float("nan")}, "ratio"),
        ({"ratio": True}, "ratio"),
        ({"ratio": "0.5"}, "ratio"),
        ({"ratio": 0.02}, "ratio"),  # rounds to 0 attention channels: not a mix
        ({"ratio": 0.98}, "ratio"),  # rounds to all channels
        ({"ratio": 0.5, "num_groups": 5}, "num_groups"),
        ({"ratio": 1.0, "num_heads": 3}, "num_heads"),
        ({"ratio": 0.5, "num_heads": 0}, "num_heads"),
        ({"ratio": 0.5, "kernel_size": 2}, "kernel_size"),
        ({"ratio": 0.5, "pool": 0}, "pool"),
        ({"ratio": 0.5, "channels": 0}, "channels"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, name: str) -> None:
    args = {"channels": 16, "num_groups": 4, **kwargs}
    with pytest.raises(ValueError, match=name):
        MixedBlock(args.pop("channels"), args.pop("ratio"), **args)


def test_a_pool_that_does_not_divide_the_map_is_named() -> None:
    with pytest.raises(ValueError, match="pool=3"):
        MixedBlock(16, 0.5, pool=3, num_groups=4)(X)


def tiny_expert(ratio: float | tuple[float, ...] = 0.5) -> MixedUNet:
    return MixedUNet(
        base_channels=8, channel_mults=(1, 2), ratio=ratio, num_heads=2, num_groups=4,
        num_timesteps=50,
    )  # fmt: skip


def test_expert_predicts_zero_at_init_and_keeps_samples_apart() -> None:
    model = tiny_expert()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0, 10, 30, 49])
    assert torch.equal(model(x, t), torch.zeros_like(x))
    randomize(model)
    together = model(x, t)
    alone = torch.cat([model(x[b : b + 1], t[b : b + 1]) for b in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_expert_ratio_per_level() -> None:
    model = tiny_expert((0.0, 1.0))
    mixers = [m for m in model.modules() if isinstance(m, MixedBlock)]
    assert {(m.conv_channels, m.attn_channels) for m in mixers} == {(8, 0), (0, 16)}
    with pytest.raises(ValueError, match="one per level"):
        tiny_expert((0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"ratio\[1\]"):
        tiny_expert((0.5, 2.0))


def test_branches_add_up_to_the_block() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 4, 4, generator=gen)
    for ratio in (0.0, 0.5, 1.0):
        block = MixedBlock(8, ratio, num_heads=2, num_groups=4, zero_init=False)
        conv, attention = block.branches(x)
        parts = [p for p in (conv, attention) if p is not None]
        assert len(parts) == (2 if ratio == 0.5 else 1)
        assert (conv is None) == (ratio == 1.0) and (attention is None) == (ratio == 0.0)
        total = sum(parts) + block.merge.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(total, block(x) - x, rtol=1e-5, atol=1e-6)


def test_mixers_of_a_level() -> None:
    net = MixedUNet(base_channels=8, channel_mults=(1, 2, 2), num_blocks=2, num_heads=2)
    counts = [len(net.mixers(level)) for level in range(3)]
    assert counts == [2 + 3, 2 + 3, 2 + 2 + 3]  # down, (middle at the deepest level), up
    assert {m.norm.num_channels for m in net.mixers(0)} == {8}
    assert {m.norm.num_channels for m in net.mixers(2)} == {16}
    with pytest.raises(ValueError, match="level"):
        net.mixers(3)
