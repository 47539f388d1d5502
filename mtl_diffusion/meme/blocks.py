"""The mixed block: a convolution branch and an attention branch over a split of the channels.

MEME's observation: a denoiser acts as a filter whose frequency band depends on the noise level;
convolution behaves like a high-pass mixer and self-attention (here on average-pooled tokens,
upsampled back) like a low-pass one. A mixed block gives a fraction ``ratio`` of its C channels
to attention and the rest to convolution, then merges them:

    h = GroupNorm(x);  a = attention channels (ratio * C, to the nearest multiple of num_heads)
    y = x + merge(cat[conv(SiLU(h[:, :C - a])), up(attention(pool(h[:, C - a:])))])

(GroupNorm -> SiLU -> conv as in the U-Net's ResBlock, GroupNorm -> attention as in its
AttentionBlock; ``merge`` is a 1x1 convolution, zero-initialised like the U-Net's last layer of
every residual branch.) ``ratio = 0`` is :class:`ConvBlock` and ``ratio = 1`` is
:class:`PooledAttentionBlock`, parameter for parameter (same state-dict keys). The paper's exact
mixer (the per-layer and per-expert ratios, pooling sizes) is not published in a form checked
here; these are documented choices.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_diffusion.models.dit import SelfAttention
from mtl_diffusion.models.unet import zero_init


def check_ratio(ratio: object, name: str = "ratio") -> float:
    """``ratio`` as a float in [0, 1]; ValueError naming ``name`` otherwise."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise ValueError(f"{name} must be a real number in [0, 1], got {ratio!r}")
    value = float(ratio)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {ratio!r}")
    return value


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def attention_channels(channels: int, ratio: float, num_heads: int) -> int:
    """Channels of the attention branch: ``ratio * channels`` rounded to the nearest multiple of
    ``num_heads``. Raises ValueError when the rounding would turn a mix (0 < ratio < 1) into a
    pure block, or when ratio = 1 and num_heads does not divide the channels."""
    channels = _positive_int(channels, "channels")
    num_heads = _positive_int(num_heads, "num_heads")
    ratio = check_ratio(ratio)
    count = num_heads * round(ratio * channels / num_heads)
    if ratio == 1.0 and count != channels:
        raise ValueError(
            f"ratio=1 (all attention) needs num_heads to divide channels; got channels={channels},"
            f" num_heads={num_heads}"
        )
    if 0.0 < ratio < 1.0 and count in (0, channels):
        raise ValueError(
            f"ratio={ratio} of channels={channels} rounds to {count} attention channels "
            f"(multiples of num_heads={num_heads}), a pure block: use ratio=0 or ratio=1 for "
            "that, or more channels / fewer heads for a mix"
        )
    return count


def _check_block(channels: int, num_groups: int, kernel_size: int, pool: int) -> None:
    channels = _positive_int(channels, "channels")
    num_groups = _positive_int(num_groups, "num_groups")
    if channels % num_groups:
        raise ValueError(
            f"num_groups must divide channels (GroupNorm); got channels={channels}, "
            f"num_groups={num_groups}"
        )
    if _positive_int(kernel_size, "kernel_size") % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same-size output), got {kernel_size}")
    _positive_int(pool, "pool")


def _conv(channels: int, kernel_size: int, depthwise: bool) -> nn.Conv2d:
    groups = channels if depthwise else 1
    return nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=groups)


def _merge(channels: int, zero: bool) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1)
    return zero_init(conv) if zero else conv  # type: ignore[return-value]


def pooled_attention(attn: SelfAttention, h: Tensor, pool: int) -> Tensor:
    """Self-attention over the tokens of ``h`` average-pooled by ``pool`` x ``pool``, upsampled
    back to h's size by nearest neighbour: (B, C, H, W) -> (B, C, H, W)."""
    b, c, height, width = h.shape
    if height % pool or width % pool:
        raise ValueError(
            f"pool={pool} must divide the feature map's height and width, got {height}x{width}"
        )
    pooled = F.avg_pool2d(h, pool) if pool > 1 else h
    grid = pooled.shape[2:]
    out = attn(pooled.flatten(2).transpose(1, 2))  # (B, tokens, C)
    out = out.transpose(1, 2).reshape(b, c, *grid)
    return F.interpolate(out, scale_factor=float(pool), mode="nearest") if pool > 1 else out


class MixedBlock(nn.Module):
    """Residual block mixing ``conv_channels`` by convolution and ``attn_channels`` by
    self-attention on ``pool`` x ``pool`` average-pooled tokens (see the module doc).

    ``depthwise``: the convolution branch is depthwise (one kernel per channel) or regular.
    ``zero_init``: the merge starts at zero (the block starts as the identity).
    """

    def __init__(
        self,
        channels: int,
        ratio: float,
        *,
        num_heads: int = 4,
        pool: int = 2,
        kernel_size: int = 3,
        depthwise: bool = True,
        num_groups: int = 8,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        _check_block(channels, num_groups, kernel_size, pool)
        self.ratio = check_ratio(ratio)
        self.attn_channels = attention_channels(channels, self.ratio, num_heads)
        self.conv_channels = channels - self.attn_channels
        self.pool = pool
        self.norm = nn.GroupNorm(num_groups, channels)
        self.conv = (
            _conv(self.conv_channels, kernel_size, depthwise) if self.conv_channels else None
        )
        self.attn = SelfAttention(self.attn_channels, num_heads) if self.attn_channels else None
        self.merge = _merge(channels, zero_init)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        parts = []
        if self.conv is not None:
            parts.append(self.conv(F.silu(h[:, : self.conv_channels])))
        if self.attn is not None:
            parts.append(pooled_attention(self.attn, h[:, self.conv_channels :], self.pool))
        mixed = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return x + self.merge(mixed)

    def branches(self, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """What the convolution and the attention branch each add to x, through their columns
        of the merge, without its bias: ``block(x) = x + conv + attention + merge.bias`` (a
        branch without channels gives None). For measuring each mixer on its own, e.g. with
        :func:`~mtl_diffusion.meme.spectrum.frequency_response`."""
        h = self.norm(x)
        weight, c = self.merge.weight, self.conv_channels
        conv = attention = None
        if self.conv is not None:
            conv = F.conv2d(self.conv(F.silu(h[:, :c])), weight[:, :c])
        if self.attn is not None:
            mixed = pooled_attention(self.attn, h[:, c:], self.pool)
            attention = F.conv2d(mixed, weight[:, c:])
        return conv, attention


class ConvBlock(nn.Module):
    """The pure convolution block: x + merge(conv(SiLU(GroupNorm(x)))) (MixedBlock, ratio 0)."""

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 3,
        depthwise: bool = True,
        num_groups: int = 8,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        _check_block(channels, num_groups, kernel_size, 1)
        self.norm = nn.GroupNorm(num_groups, channels)
        self.conv = _conv(channels, kernel_size, depthwise)
        self.merge = _merge(channels, zero_init)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.merge(self.conv(F.silu(self.norm(x))))


class PooledAttentionBlock(nn.Module):
    """The pure attention block: x + merge(up(attention(pool(GroupNorm(x))))) (MixedBlock,
    ratio 1)."""

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 4,
        pool: int = 2,
        num_groups: int = 8,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        _check_block(channels, num_groups, 1, pool)
        attention_channels(channels, 1.0, num_heads)  # validates num_heads
        self.pool = pool
        self.norm = nn.GroupNorm(num_groups, channels)
        self.attn = SelfAttention(channels, num_heads)
        self.merge = _merge(channels, zero_init)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.merge(pooled_attention(self.attn, self.norm(x), self.pool))
