"""A small DiT denoiser (adaLN-Zero blocks) with optional Denoising Task Routing.

With routing, a block computes ``x + f(m_t * x)``: only the block input is masked, the residual
stream keeps every channel and the adaLN conditioning is unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_diffusion.models.embedding import TimestepEmbedding
from mtl_diffusion.routing import RoutingSpec, make_router, route


def sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """(N,) positions -> (N, dim) features [sin(p w_k), cos(p w_k)], w_k = 10000^(-2k/dim)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = pos.double()[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid: int) -> Tensor:
    """Fixed (grid * grid, dim) positional embedding: half the features encode the row, half
    the column; tokens are in row-major order."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, rows.flatten()), sincos_1d(dim // 2, cols.flatten())], 1)
    return emb.float()


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x * (1 + scale) + shift with per-sample (B, D) shift and scale over (B, N, D)."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens (B, N, D).

    Written with matmul + softmax rather than ``F.scaled_dot_product_attention``: under
    ``torch.func.vmap`` the fused kernel has no batching rule on CPU (slow per-chunk fallback),
    and at these token counts the plain form is as fast or faster.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
        out = weights @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block; modulation zero-initialised so the block starts as identity."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        routing: RoutingSpec | None,
        num_timesteps: int,
    ):
        super().__init__()
        self.router = make_router(routing, num_timesteps, dim, channel_dim=-1)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor, t: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=1)
        h = route(self.router, x, t)
        a = gate1[:, None, :] * self.attn(modulate(self.norm1(h), shift1, scale1))
        b = gate2[:, None, :] * self.mlp(modulate(self.norm2(h + a), shift2, scale2))
        return x + a + b


class FinalLayer(nn.Module):
    """adaLN LayerNorm then a linear map to patch pixels; all zero-initialised (output 0)."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """Diffusion transformer: ``forward(x, t)`` maps (B, C, S, S) and (B,) timesteps to
    (B, C, S, S), with S = ``image_size``. ``route_output=True`` also routes the final layer's
    input (the published DiT code leaves it unrouted: the default)."""

    def __init__(
        self,
        image_size: int = 8,
        in_channels: int = 1,
        patch_size: int = 2,
        hidden_size: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        num_timesteps: int = 1000,
        routing: RoutingSpec | None = None,
        route_output: bool = False,
    ):
        super().__init__()
        _validate(image_size, in_channels, patch_size, hidden_size, depth, num_heads, mlp_ratio)
        self.image_size, self.in_channels, self.patch_size = image_size, in_channels, patch_size
        self.grid = image_size // patch_size
        self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer("pos_embed", sincos_2d(hidden_size, self.grid), persistent=False)
        self.time_embed = TimestepEmbedding(256, hidden_size, num_timesteps)
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, num_heads, mlp_ratio, routing, num_timesteps)
            for _ in range(depth)
        )
        self.final = FinalLayer(hidden_size, patch_size, in_channels)
        self.out_router = (
            make_router(routing, num_timesteps, hidden_size, channel_dim=-1)
            if route_output
            else None
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """DiT initialisation: Xavier linears, N(0, 0.02) timestep MLP, zero adaLN and output."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for layer in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        zeroed = [blk.modulation[-1] for blk in self.blocks]
        zeroed += [self.final.modulation[-1], self.final.linear]
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must be (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        h = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, N, D)
        c = self.time_embed(t)
        for block in self.blocks:
            h = block(h, c, t)
        return self.unpatchify(self.final(route(self.out_router, h, t), c))

    def unpatchify(self, h: Tensor) -> Tensor:
        """(B, N, p * p * C) patch tokens (row-major) -> (B, C, S, S) image."""
        b, g, p, ch = h.shape[0], self.grid, self.patch_size, self.in_channels
        h = h.reshape(b, g, g, p, p, ch).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(b, ch, g * p, g * p)


def _validate(
    image_size: int,
    in_channels: int,
    patch_size: int,
    hidden_size: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float,
) -> None:
    """Raise ValueError naming the first bad DiT argument."""
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if patch_size < 1 or image_size < 1 or image_size % patch_size:
        raise ValueError(
            f"image_size must be a positive multiple of patch_size, got "
            f"image_size={image_size}, patch_size={patch_size}"
        )
    if hidden_size < 4 or hidden_size % 4:
        raise ValueError(
            f"hidden_size must be a positive multiple of 4 (2-D sin-cos positions), "
            f"got {hidden_size}"
        )
    if num_heads < 1 or hidden_size % num_heads:
        raise ValueError(f"num_heads must divide hidden_size={hidden_size}, got {num_heads}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if not mlp_ratio > 0:
        raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")
