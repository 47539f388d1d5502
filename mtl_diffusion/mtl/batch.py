"""A denoising minibatch with explicit cluster ids, how a model is called on it, its losses.

The engine never assumes a layout: every sample carries its cluster id (validated: ids in
0..k-1, every cluster present). `forward(model, x_t, t, **cond)` says how to call the model on a
(sub-)batch; `cond` holds per-sample conditioning (class labels, ...), split with the batch.
`loss(output, batch)` gives the per-sample loss (B,); the default is the weighted MSE.
The cluster loss is L_i = (1 / B) sum over the samples of cluster i of the per-sample loss, so
sum_i L_i is the batch mean (ANT's "mean of chunk i divided by k" when the chunks are equal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

Forward = Callable[..., Tensor]
SampleLoss = Callable[[Tensor, "DenoisingBatch"], Tensor]


def call_model(model: nn.Module, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
    """The default forward: model(x_t, t, **cond), a tensor."""
    return model(x_t, t, **cond)


def weighted_mse(output: Tensor, batch: DenoisingBatch) -> Tensor:
    """The default per-sample loss: weight_b * mean squared error of sample b, (B,)."""
    return batch.weight * ((output - batch.target) ** 2).flatten(1).mean(dim=1)


def interleaved_clusters(batch_size: int, k: int, device: torch.device | None = None) -> Tensor:
    """Cluster ids b mod k (the layout of timesteps.StratifiedTimesteps), (batch_size,)."""
    return torch.arange(batch_size, device=device) % k


@dataclass
class DenoisingBatch:
    """One minibatch: the model sees (x_t, t, **cond) and regresses `target`; sample b has loss
    weight `weight[b]` and belongs to cluster `clusters[b]` of `num_clusters`.

    `clusters` may be left out only when num_clusters is 1. Every tensor of `cond` has one row
    per sample; conditioning shared by the whole batch belongs in the forward function.
    """

    x_t: Tensor
    t: Tensor
    target: Tensor
    weight: Tensor
    num_clusters: int = 1
    clusters: Tensor | None = None
    cond: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        size, k = len(self.x_t), self.num_clusters
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= size:
            raise ValueError(
                f"num_clusters must be an integer in 1..B={size} (every cluster in the batch), "
                f"got {k!r}"
            )
        for name in ("t", "target", "weight"):
            if len(getattr(self, name)) != size:
                raise ValueError(
                    f"DenoisingBatch.{name} has {len(getattr(self, name))} rows, x_t {size}"
                )
        if self.weight.shape != (size,):
            raise ValueError(
                f"DenoisingBatch.weight must have shape ({size},), one weight per sample; got "
                f"{tuple(self.weight.shape)}"
            )
        for name, value in self.cond.items():
            if not isinstance(value, Tensor) or value.dim() == 0 or len(value) != size:
                raise ValueError(
                    f"DenoisingBatch.cond[{name!r}] must be a tensor with one row per sample "
                    f"({size}); pass conditioning shared by the batch through the forward function"
                )
        if self.clusters is None:
            if k != 1:
                raise ValueError(
                    f"DenoisingBatch with num_clusters={k} needs clusters=, the cluster id of "
                    "every sample (for timesteps.StratifiedTimesteps: its assignments(B), or "
                    "interleaved_clusters(B, k))"
                )
            self.clusters = torch.zeros(size, dtype=torch.long, device=self.x_t.device)
        ids = self.clusters
        if ids.shape != (size,) or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"DenoisingBatch.clusters must be an integer tensor of shape ({size},), got "
                f"{tuple(ids.shape)} {ids.dtype}"
            )
        counts = torch.bincount(ids.clamp(0, k), minlength=k + 1).tolist()
        if int(ids.min()) < 0 or int(ids.max()) >= k:
            raise ValueError(
                f"DenoisingBatch.clusters must lie in 0..{k - 1}, got {ids.min()}..{ids.max()}"
            )
        if 0 in counts[:k]:
            raise ValueError(
                f"cluster {counts.index(0)} has no sample in this batch: every cluster must be "
                "present (draw t stratified by cluster, or merge clusters)"
            )
        self.clusters = ids.long()

    @property
    def sizes(self) -> list[int]:
        """Number of samples of each cluster."""
        return torch.bincount(self.clusters, minlength=self.num_clusters).tolist()

    def select(self, index: Tensor) -> DenoisingBatch:
        """The samples at `index` (cluster ids kept; the sub-batch must hold every cluster)."""
        return replace(
            self,
            x_t=self.x_t[index],
            t=self.t[index],
            target=self.target[index],
            weight=self.weight[index],
            clusters=self.clusters[index],
            cond={name: v[index] for name, v in self.cond.items()},
        )

    def cluster_index(self, i: int) -> Tensor:
        """Indices of the samples of cluster i."""
        return torch.nonzero(self.clusters == i).flatten()

    def cluster(self, i: int) -> DenoisingBatch:
        """The samples of cluster i (their ids and num_clusters kept, for a loss that reads
        them; unvalidated, since the other clusters are absent)."""
        index = self.cluster_index(i)
        sub = DenoisingBatch.unchecked(
            self.x_t[index],
            self.t[index],
            self.target[index],
            self.weight[index],
            {name: v[index] for name, v in self.cond.items()},
        )
        sub.num_clusters, sub.clusters = self.num_clusters, self.clusters[index]
        return sub

    @classmethod
    def unchecked(
        cls, x_t: Tensor, t: Tensor, target: Tensor, weight: Tensor, cond: dict
    ) -> DenoisingBatch:
        """A one-cluster batch built without validation (inside torch.func transforms)."""
        batch = object.__new__(cls)
        batch.x_t, batch.t, batch.target, batch.weight, batch.cond = x_t, t, target, weight, cond
        batch.num_clusters, batch.clusters = 1, None
        return batch


def cluster_sum(v: Tensor, clusters: Tensor, k: int) -> Tensor:
    """(B, ...) -> (k, ...): the sum over the samples of each cluster."""
    return v.new_zeros(k, *v.shape[1:]).index_add_(0, clusters, v)


def cluster_losses(per_sample: Tensor, batch: DenoisingBatch) -> Tensor:
    """L_i = (1 / B) sum over the samples of cluster i of the per-sample losses, (k,)."""
    return cluster_sum(per_sample, batch.clusters, batch.num_clusters) / len(per_sample)


def sample_losses(output: Tensor, batch: DenoisingBatch) -> Tensor:
    """The default per-sample loss (kept under its earlier name): see weighted_mse."""
    return weighted_mse(output, batch)


@dataclass
class PaddedBatch:
    """A batch reordered so that row r * k + i is the r-th sample of cluster i (rows past a
    cluster's size repeat one of its samples with `real` False: their loss is masked to zero).
    Every cluster then has `rows` samples and (B', ...) viewed as (rows, k, ...) is free."""

    batch: DenoisingBatch
    real: Tensor  # (rows * k,) bool
    rows: int
    size: int  # B of the original batch

    @property
    def is_identity(self) -> bool:
        return bool(self.real.all()) and self.rows * self.batch.num_clusters == self.size


def pad_interleaved(batch: DenoisingBatch) -> PaddedBatch:
    """The batch in interleaved, equal-size layout (no copy when it already is)."""
    k, size = batch.num_clusters, len(batch.x_t)
    if size % k == 0 and torch.equal(
        batch.clusters, interleaved_clusters(size, k, batch.clusters.device)
    ):
        real = torch.ones(size, dtype=torch.bool, device=batch.x_t.device)
        return PaddedBatch(batch, real, size // k, size)
    rows = max(batch.sizes)
    index = torch.empty(rows, k, dtype=torch.long)
    real = torch.zeros(rows, k, dtype=torch.bool)
    for i in range(k):
        members = batch.cluster_index(i).cpu()
        index[: len(members), i] = members
        index[len(members) :, i] = members[0]
        real[: len(members), i] = True
    device = batch.x_t.device
    padded = batch.select(index.flatten().to(device))
    return PaddedBatch(padded, real.flatten().to(device), rows, size)
