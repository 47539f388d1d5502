"""A residual MLP denoiser for low-dimensional toy data (e.g. 2-D Gaussian mixtures)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mtl_diffusion.models.embedding import TimestepEmbedding


class MLPBlock(nn.Module):
    """LayerNorm -> SiLU -> linear (+ timestep embedding) -> SiLU -> linear, added to the input."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        z = self.fc1(F.silu(self.norm(h))) + self.emb(emb)
        return h + self.fc2(F.silu(z))


class MLPDenoiser(nn.Module):
    """``forward(x, t)`` maps (B, dim) points and (B,) timesteps to a (B, dim) prediction."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, num_timesteps: int = 1000):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if hidden < 2 or hidden % 2:
            raise ValueError(f"hidden must be an even number >= 2, got {hidden}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.dim = dim
        self.time_embed = TimestepEmbedding(hidden, hidden, num_timesteps)
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(MLPBlock(hidden) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be (B, {self.dim}), got {tuple(x.shape)}")
        emb = F.silu(self.time_embed(t))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.out_norm(h)))
