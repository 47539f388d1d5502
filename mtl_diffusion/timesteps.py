"""Timestep samplers: which denoising tasks a minibatch trains on.

A sampler has `sample(batch_size, generator) -> LongTensor (batch_size,)`; it may also have
`observe(step, loss)` (called by the trainer after every step, e.g. for curriculum pacing) and
`state_dict()` / `load_state_dict()` (saved in checkpoints, so a resumed run continues it).
"""

from __future__ import annotations

import torch


class UniformTimesteps:
    """t ~ Uniform{start, ..., end} independently per sample; the full range is ordinary DDPM."""

    def __init__(self, num_timesteps: int, start: int = 0, end: int | None = None) -> None:
        end = num_timesteps - 1 if end is None else end
        if not 0 <= start <= end < num_timesteps:
            raise ValueError(
                f"need 0 <= start <= end < num_timesteps, got start={start}, end={end}, "
                f"num_timesteps={num_timesteps}"
            )
        self.num_timesteps, self.start, self.end = num_timesteps, start, end

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(self.start, self.end + 1, (batch_size,), generator=generator)
