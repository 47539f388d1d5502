"""Timestep samplers: which denoising tasks a minibatch trains on."""

from __future__ import annotations

import torch


class UniformTimesteps:
    """t ~ Uniform{0, ..., T-1}, independently per sample (ordinary DDPM training)."""

    def __init__(self, num_timesteps: int) -> None:
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
        self.num_timesteps = num_timesteps

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(self.num_timesteps, (batch_size,), generator=generator)
