"""A small ADM-style U-Net denoiser with optional Denoising Task Routing.

GroupNorm only (no BatchNorm): every sample's output and gradient depend on that sample alone.
DTR masks sit between each GroupNorm (+ SiLU) and the zero-initialised layer that follows it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_diffusion.models.dit import SelfAttention
from mtl_diffusion.models.embedding import TimestepEmbedding
from mtl_diffusion.routing import RoutingSpec, make_router, route


def zero_init(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, + timestep embedding, GroupNorm -> SiLU -> dropout -> [mask]
    -> zero conv, plus a (1x1 conv when channels change) skip."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        dropout: float,
        num_groups: int,
        scale_shift: bool,
        routing: RoutingSpec | None,
        num_timesteps: int,
    ):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = nn.GroupNorm(num_groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = nn.GroupNorm(num_groups, out_ch)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.router = make_router(routing, num_timesteps, out_ch)
        self.conv2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor, t: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = route(self.router, self.drop(F.silu(h)), t)
        return self.skip(x) + self.conv2(h)


class AttentionBlock(nn.Module):
    """GroupNorm -> [mask] -> multi-head self-attention over pixels (zero-initialised output
    projection), added to the input."""

    def __init__(
        self,
        channels: int,
        num_heads: int,
        num_groups: int,
        routing: RoutingSpec | None,
        num_timesteps: int,
    ):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups, channels)
        self.router = make_router(routing, num_timesteps, channels)
        self.attn = SelfAttention(channels, num_heads)
        zero_init(self.attn.proj)

    def forward(self, x: Tensor, emb: Tensor, t: Tensor) -> Tensor:
        b, c, hgt, wid = x.shape
        h = route(self.router, self.norm(x), t)
        out = self.attn(h.flatten(2).transpose(1, 2))  # (B, HW, C) tokens
        return x + out.transpose(1, 2).reshape(b, c, hgt, wid)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor, t: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 followed by a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor, t: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Stage(nn.ModuleList):
    """Layers applied in order, each called as layer(h, emb, t)."""

    def forward(self, h: Tensor, emb: Tensor, t: Tensor) -> Tensor:
        for layer in self:
            h = layer(h, emb, t)
        return h


class UNet(nn.Module):
    """ADM-style U-Net: ``forward(x, t)`` maps (B, C, H, W) and (B,) timesteps to (B, C, H, W).

    Level i works at resolution H / 2**i with ``base_channels * channel_mults[i]`` channels;
    ``attention_levels`` lists the levels that get self-attention (the middle block gets it
    when the deepest level is listed). The output convolution is zero-initialised, so the
    model predicts exactly 0 at initialisation. With routing, masks sit between every GroupNorm
    and the zero-initialised layer after it (the DTR authors' stated rule for ADM);
    ``route_output=False`` leaves the output layer unrouted (as the published DiT code does).
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        attention_levels: Sequence[int] = (),
        num_heads: int = 4,
        dropout: float = 0.0,
        num_groups: int = 8,
        num_timesteps: int = 1000,
        routing: RoutingSpec | None = None,
        scale_shift: bool = False,
        route_output: bool = True,
    ):
        super().__init__()
        channel_mults, attention_levels = tuple(channel_mults), tuple(attention_levels)
        _validate(
            in_channels,
            base_channels,
            channel_mults,
            num_res_blocks,
            attention_levels,
            num_heads,
            dropout,
            num_groups,
        )
        self.in_channels = in_channels
        self.num_levels = len(channel_mults)
        emb_dim = 4 * base_channels
        self.time_embed = TimestepEmbedding(base_channels, emb_dim, num_timesteps)
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(
                cin, cout, emb_dim, dropout, num_groups, scale_shift, routing, num_timesteps
            )

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, num_heads, num_groups, routing, num_timesteps)

        ch, skip_chs = base_channels, [base_channels]
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                stage = Stage([res(ch, base_channels * mult)])
                ch = base_channels * mult
                if level in attention_levels:
                    stage.append(attn(ch))
                self.down.append(stage)
                skip_chs.append(ch)
            if level < self.num_levels - 1:
                self.down.append(Stage([Downsample(ch)]))
                skip_chs.append(ch)

        middle = [res(ch, ch), res(ch, ch)]
        if self.num_levels - 1 in attention_levels:
            middle.insert(1, attn(ch))
        self.middle = Stage(middle)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for i in range(num_res_blocks + 1):
                stage = Stage([res(ch + skip_chs.pop(), base_channels * mult)])
                ch = base_channels * mult
                if level in attention_levels:
                    stage.append(attn(ch))
                if level > 0 and i == num_res_blocks:
                    stage.append(Upsample(ch))
                self.up.append(stage)

        self.out_norm = nn.GroupNorm(num_groups, ch)
        self.out_router = make_router(routing, num_timesteps, ch) if route_output else None
        self.out_conv = zero_init(nn.Conv2d(ch, in_channels, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = unet_features(self, x, t)
        h = route(self.out_router, F.silu(self.out_norm(h)), t)
        return self.out_conv(h)


def unet_features(model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
    """The U-Net path of `model` (in_channels, num_levels, time_embed, conv_in, down, middle,
    up: UNet or a U-Net of other blocks) from x_t to the last stage's features, input checked."""
    factor = 2 ** (model.num_levels - 1)
    bad_size = x.dim() != 4 or x.shape[2] % factor or x.shape[3] % factor
    if bad_size or x.shape[1] != model.in_channels:
        raise ValueError(
            f"x must be (B, {model.in_channels}, H, W) with H and W divisible by "
            f"{factor}, got {tuple(x.shape)}"
        )
    emb = F.silu(model.time_embed(t))
    h = model.conv_in(x)
    skips = [h]
    for stage in model.down:
        h = stage(h, emb, t)
        skips.append(h)
    h = model.middle(h, emb, t)
    for stage in model.up:
        h = stage(torch.cat([h, skips.pop()], dim=1), emb, t)
    return h


def _validate(
    in_channels: int,
    base_channels: int,
    channel_mults: tuple[int, ...],
    num_res_blocks: int,
    attention_levels: tuple[int, ...],
    num_heads: int,
    dropout: float,
    num_groups: int,
) -> None:
    """Raise ValueError naming the first bad U-Net argument."""
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if not channel_mults or any(m < 1 for m in channel_mults):
        raise ValueError(f"channel_mults must be non-empty ints >= 1, got {channel_mults}")
    if num_res_blocks < 1:
        raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
    levels = tuple(range(len(channel_mults)))
    if any(level not in levels for level in attention_levels):
        raise ValueError(f"attention_levels must be drawn from {levels}, got {attention_levels}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    widths = [base_channels * m for m in channel_mults]
    if base_channels < 1 or num_groups < 1 or any(w % num_groups for w in [base_channels, *widths]):
        raise ValueError(
            f"base_channels * each of channel_mults must be divisible by num_groups; "
            f"got base_channels={base_channels}, channel_mults={channel_mults}, "
            f"num_groups={num_groups}"
        )
    if num_heads < 1 or any(widths[level] % num_heads for level in attention_levels):
        raise ValueError(
            f"num_heads must divide the channels of every attention level; "
            f"got num_heads={num_heads}, widths={widths}"
        )
