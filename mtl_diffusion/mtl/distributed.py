"""Data parallelism for the MTL engine: which rank this process is, its share of the global
batch, and the averaging of losses and per-cluster gradients over ranks.

Under DistributedDataParallel every rank computes the cluster losses L_i^r and gradients g_i^r
of its own B / W samples (L_i^r = 1 / (B / W) sum over its samples of cluster i), so the global
L_i and g_i of the whole batch are their averages over the W ranks. Gradient methods need the
Gramian of the GLOBAL g_i (not an average of local Gramians): RankAverage all-reduces the (k, P)
matrix in buckets, after which every rank computes the same weights and the same update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

BUCKET_BYTES = 25 * 2**20  # like DistributedDataParallel's default bucket_cap_mb


@dataclass(frozen=True)
class Ranks:
    """This process's place in the default process group (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """True on the rank that writes checkpoints, results and progress."""
        return self.rank == 0


def current_ranks() -> Ranks:
    """The Ranks of the initialised default process group, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def shard(batch_size: int, num_clusters: int, ranks: Ranks) -> slice:
    """Rows of the global batch this rank trains on: a contiguous B / W block.

    With the stratified samplers' interleaved layout (sample b in cluster b mod k) every block
    of at least k rows holds every cluster, as the engine requires.
    """
    if batch_size % ranks.world:
        raise ValueError(
            f"train.batch_size={batch_size} (the global batch) must be divisible by the number "
            f"of processes ({ranks.world})"
        )
    size = batch_size // ranks.world
    if size < num_clusters:
        raise ValueError(
            f"train.batch_size={batch_size} over {ranks.world} processes leaves {size} samples "
            f"per rank, fewer than the {num_clusters} clusters every rank's batch must hold: "
            f"use train.batch_size >= {num_clusters * ranks.world}"
        )
    return slice(ranks.rank * size, (ranks.rank + 1) * size)


class RankAverage:
    """Averages tensors in place over the ranks of `group`, `bucket_bytes` per all-reduce.

    `bytes_sent` counts the payload handed to all-reduce (per rank), for benchmarks.
    """

    def __init__(self, group: dist.ProcessGroup | None = None, bucket_bytes: int = BUCKET_BYTES):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "RankAverage needs an initialised process group (torch.distributed."
                "init_process_group, or run under torchrun)"
            )
        if bucket_bytes < 1:
            raise ValueError(f"bucket_bytes must be >= 1, got {bucket_bytes}")
        self.group, self.bucket_bytes = group, bucket_bytes
        self.world = dist.get_world_size(group)
        self.bytes_sent = 0

    def __call__(self, tensor: Tensor) -> Tensor:
        """Replace `tensor` (contiguous) by its mean over the ranks; returns it."""
        if not tensor.is_contiguous():
            raise ValueError("RankAverage needs a contiguous tensor (it averages a flat view)")
        flat = tensor.view(-1)
        step = max(1, self.bucket_bytes // flat.element_size())
        works = [
            dist.all_reduce(chunk, group=self.group, async_op=True) for chunk in flat.split(step)
        ]
        for work in works:
            work.wait()
        self.bytes_sent += flat.numel() * flat.element_size()
        return tensor.div_(self.world)

    def straight_through(self, losses: Tensor) -> Tensor:
        """Losses whose VALUE is the mean over ranks and whose GRADIENT is this rank's own.

        Weights computed from the value are then the same on every rank, while the backward of
        sum_i w_i L_i gives the local gradient that DistributedDataParallel averages; a learned
        weighting's own parameters (uncertainty weighting's s) get the global gradient at once.
        """
        mean = self(losses.detach().clone())
        return losses + (mean - losses.detach())


def broadcast_state(module: torch.nn.Module, src: int = 0) -> None:
    """Copy `module`'s parameters and buffers from rank `src` to every rank (in place)."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src)
