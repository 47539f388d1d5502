"""Timestep samplers: which denoising tasks a minibatch trains on.

A sampler has `sample(batch_size, generator) -> LongTensor (batch_size,)`; it may also have
`observe(step, loss)` (called by the trainer after every step, e.g. for curriculum pacing) and
`state_dict()` / `load_state_dict()` (saved in checkpoints, so a resumed run continues it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtl_diffusion.clustering import (
    Interval,
    affinity_clusters,
    snr_clusters,
    timestep_clusters,
    validate_intervals,
)
from mtl_diffusion.config import Config
from mtl_diffusion.diffusion import make_schedule


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

    @classmethod
    def from_config(cls, config: Config) -> StratifiedTimesteps:
        """Clusters from config.mtl.clustering with k = config.mtl.num_clusters."""
        return cls(clusters_from_config(config))

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


def clusters_from_config(config: Config) -> list[Interval]:
    """The k = config.mtl.num_clusters timestep intervals of config.mtl.clustering.

    timestep: equal widths; snr: clustering of the schedule's log-SNR; affinity: clustering of
    the task-affinity matrix between config.mtl.affinity_bins bins of equal width (estimated,
    and cached, by mtl_diffusion.affinity.task_affinity).
    """
    mtl, T = config.mtl, config.diffusion.num_timesteps
    if config.timesteps.t_start != 0 or config.timesteps.t_end not in (-1, T - 1):
        raise ValueError(
            "timesteps.sampler='stratified' covers all timesteps: timesteps.t_start and "
            "timesteps.t_end must keep their defaults (0 and -1)"
        )
    if not 1 <= mtl.num_clusters <= T:
        raise ValueError(f"mtl.num_clusters must be in 1..{T}, got {mtl.num_clusters}")
    if mtl.clustering == "timestep":
        return timestep_clusters(T, mtl.num_clusters)
    if mtl.clustering == "snr":
        return snr_clusters(make_schedule(config.diffusion.schedule, T), mtl.num_clusters)
    bins = mtl.affinity_bins
    if not (mtl.num_clusters <= bins <= T and T % bins == 0):
        raise ValueError(
            f"mtl.affinity_bins must divide diffusion.num_timesteps={T} and be >= "
            f"mtl.num_clusters={mtl.num_clusters}, got {bins}"
        )
    try:
        from mtl_diffusion.affinity import task_affinity
    except ImportError as err:
        raise ValueError(
            "mtl.clustering='affinity' needs mtl_diffusion.affinity.task_affinity, which is "
            "not available; choose 'timestep' or 'snr'"
        ) from err
    tas = task_affinity(config, bins)
    return affinity_clusters(tas, mtl.num_clusters, bin_width=T // bins)
