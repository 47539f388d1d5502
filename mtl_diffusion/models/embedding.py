"""Timestep conditioning: sinusoidal features of t followed by a small MLP."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

REFERENCE_TIMESTEPS = 1000


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(B,) timesteps (any real values) -> (B, dim) features [cos(t f_k), sin(t f_k)]."""
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even number >= 2, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedding(nn.Module):
    """Integer timesteps in [0, num_timesteps) -> (B, out_dim) conditioning vector.

    Timesteps are rescaled to a 1000-step range first, so a 50-step toy schedule sees the same
    frequencies as a 1000-step one.
    """

    def __init__(self, freq_dim: int, out_dim: int, num_timesteps: int = 1000):
        super().__init__()
        if num_timesteps < 2:
            raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
        if freq_dim < 2 or freq_dim % 2:
            raise ValueError(f"freq_dim must be an even number >= 2, got {freq_dim}")
        self.freq_dim = freq_dim
        self.scale = REFERENCE_TIMESTEPS / num_timesteps
        self.mlp = nn.Sequential(
            nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t * self.scale, self.freq_dim))
