"""Timestep samplers: which denoising tasks a minibatch trains on.

A sampler has `sample(batch_size, generator) -> LongTensor (batch_size,)`; it may also have
`observe(step, loss)` (called by the trainer after every step, e.g. for curriculum pacing) and
`state_dict()` / `load_state_dict()` (saved in checkpoints, so a resumed run continues it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtl_diffusion.clustering import Interval, validate_intervals


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


class StratifiedTimesteps:
    """Every cluster in every batch: sample b draws t uniformly inside interval b mod k.

    The clusters are interleaved (0, 1, ..., k-1, 0, 1, ...), so that the k clusters of a batch
    are free views for the per-cluster gradient engine. Remainder policy when k does not divide
    the batch size B: the first B mod k clusters get one extra sample (sizes differ by at most
    one; the batch keeps its size); B < k raises ValueError (a cluster would be missing).
    `chunk_sizes(B)` and `assignments(B)` tell how many and which samples each cluster has.
    """

    def __init__(self, intervals: Sequence[Interval]) -> None:
        self.intervals = validate_intervals(intervals)
        self.num_timesteps = self.intervals[-1][1] + 1

    @property
    def num_clusters(self) -> int:
        return len(self.intervals)

    def chunk_sizes(self, batch_size: int) -> list[int]:
        """How many samples each cluster gets in a batch of `batch_size` (in cluster order)."""
        k = self.num_clusters
        if batch_size < k:
            raise ValueError(
                f"batch_size must be >= the number of clusters ({k}) so that every cluster "
                f"appears in every batch, got {batch_size}"
            )
        base, extra = divmod(batch_size, k)
        return [base + (i < extra) for i in range(k)]

    def assignments(self, batch_size: int) -> torch.Tensor:
        """Cluster index of every sample of a batch: b mod k, shape (batch_size,)."""
        self.chunk_sizes(batch_size)  # validates batch_size
        return torch.arange(batch_size) % self.num_clusters

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        t = torch.empty(batch_size, dtype=torch.long)
        k = self.num_clusters
        for i, ((start, end), size) in enumerate(
            zip(self.intervals, self.chunk_sizes(batch_size), strict=True)
        ):
            t[i::k] = torch.randint(start, end + 1, (size,), generator=generator)
        return t
