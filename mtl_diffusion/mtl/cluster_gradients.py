"""Exact per-cluster gradients of a denoising loss, three ways.

L_i = (1 / B) sum over the samples of cluster i of the per-sample loss (mtl.batch). Each L_i
depends on its own samples only when the model has no coupling between samples (GroupNorm /
LayerNorm, no BatchNorm in training mode); the definition of "exact" is the reference path:

- "reference": k separate forward and backward passes, one per cluster over only that
  cluster's samples (slow; the yardstick for the other two).
- "fast": ONE forward and ONE backward of the whole batch at about vanilla's cost, by per-layer
  capture (mtl.fast_path); refuses, naming the module or parameter, what it cannot capture.
- "vmap": torch.func vmap(grad(functional_call)) over the clusters (padded to equal size with
  masked rows); any model torch.func can transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from mtl_diffusion.mtl.batch import (
    DenoisingBatch,
    Forward,
    SampleLoss,
    call_model,
    cluster_losses,
    cluster_sum,
    interleaved_clusters,
    pad_interleaved,
    sample_losses,
    weighted_mse,
)
from mtl_diffusion.mtl.fast_path import (
    SUPPORTED,
    FastPathError,
    check_fast_path,
    check_sample_losses,
    fast_gradients,
)

PATHS = ("fast", "vmap", "reference")

__all__ = [
    "PATHS",
    "SUPPORTED",
    "ClusterGradients",
    "DenoisingBatch",
    "FastPathError",
    "check_fast_path",
    "cluster_gradients",
    "cluster_losses",
    "cluster_sum",
    "interleaved_clusters",
    "sample_losses",
    "trainable",
]


@dataclass
class ClusterGradients:
    """Cluster losses (k,) and the per-cluster gradients as one (k, P) matrix: row i is
    grad L_i flattened over the trainable parameters (model order, shapes `shapes`)."""

    losses: Tensor
    grads: Tensor
    shapes: list[torch.Size]

    def gramian(self) -> Tensor:
        """G_ij = g_i . g_j, (k, k)."""
        return self.grads @ self.grads.T

    def combine(self, weights: Tensor) -> list[Tensor]:
        """sum_i w_i g_i, one tensor per parameter (views of one flat vector)."""
        update = weights.to(self.grads) @ self.grads
        sizes = [shape.numel() for shape in self.shapes]
        return [u.view(shape) for u, shape in zip(update.split(sizes), self.shapes, strict=True)]


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that receive gradients, in model.parameters() order."""
    return [p for p in model.parameters() if p.requires_grad]


def cluster_gradients(
    model: nn.Module,
    batch: DenoisingBatch,
    path: str,
    out: Tensor | None = None,
    *,
    forward: Forward = call_model,
    loss: SampleLoss = weighted_mse,
    audit: bool = True,
) -> ClusterGradients:
    """Per-cluster losses and gradients of `model` on `batch` by the chosen path (see PATHS).

    `forward(model, x_t, t, **batch.cond)` calls the model, `loss(output, batch)` gives the
    per-sample loss (B,). `out`, a (k, P) float buffer reused across steps, receives the
    gradients; None allocates it (float32, or the parameters' dtype when wider). `audit`
    (fast path) watches every use of a parameter during the forward: on by default, the engine
    turns it off after its first batch.
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    params = trainable(model)
    if not params:
        raise ValueError("the model has no trainable parameters")
    shapes = [p.shape for p in params]
    size = (batch.num_clusters, sum(p.numel() for p in params))
    if out is None:
        dtype = torch.promote_types(params[0].dtype, torch.float32)
        out = torch.empty(size, dtype=dtype, device=params[0].device)
    elif out.shape != size:
        raise ValueError(f"out must have shape {size}, got {tuple(out.shape)}")
    if path == "fast":
        losses = fast_gradients(model, pad_interleaved(batch), forward, loss, params, out, audit)
    elif path == "vmap":
        losses = _vmap(model, batch, forward, loss, out)
    else:
        losses = _reference(model, batch, forward, loss, params, out)
    return ClusterGradients(losses.detach(), out, shapes)


def _reference(
    model: nn.Module,
    batch: DenoisingBatch,
    forward: Forward,
    loss: SampleLoss,
    params: list[nn.Parameter],
    out: Tensor,
) -> Tensor:
    losses = []
    for i in range(batch.num_clusters):
        sub = batch.cluster(i)
        output = forward(model, sub.x_t, sub.t, **sub.cond)
        value = check_sample_losses(loss(output, sub), len(sub.x_t)).sum() / len(batch.x_t)
        grads = torch.autograd.grad(value, params, allow_unused=True)
        flat = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]
        torch.cat([g.reshape(-1).to(out.dtype) for g in flat], out=out[i])
        losses.append(value.detach())
    return torch.stack(losses)


class _Functional:
    """Calls `model` with the given parameters (what the user's forward receives under vmap)."""

    def __init__(self, model: nn.Module, params: dict[str, Tensor]) -> None:
        self.model, self.params = model, params

    def __call__(self, *args, **kwargs):
        return functional_call(self.model, self.params, args, kwargs)


def _vmap(
    model: nn.Module, batch: DenoisingBatch, forward: Forward, loss: SampleLoss, out: Tensor
) -> Tensor:
    named = [(name, p.detach()) for name, p in model.named_parameters() if p.requires_grad]
    padded = pad_interleaved(batch)
    k, size = batch.num_clusters, len(batch.x_t)

    def cluster_loss(params: dict[str, Tensor], x_t, t, target, weight, real, cond):
        sub = DenoisingBatch.unchecked(x_t, t, target, weight, cond)
        per_sample = loss(forward(_Functional(model, params), x_t, t, **cond), sub)
        value = torch.where(real, per_sample, torch.zeros_like(per_sample)).sum() / size
        return value, value

    p = padded.batch
    columns = [p.x_t, p.t, p.target, p.weight, padded.real]
    views = [v.reshape(padded.rows, k, *v.shape[1:]).transpose(0, 1) for v in columns]
    cond = {n: v.reshape(padded.rows, k, *v.shape[1:]).transpose(0, 1) for n, v in p.cond.items()}
    per_cluster = vmap(
        grad(cluster_loss, has_aux=True), in_dims=(None, 0, 0, 0, 0, 0, 0), randomness="different"
    )
    grads, losses = per_cluster(dict(named), *views, cond)
    torch.cat([grads[name].reshape(k, -1).to(out.dtype) for name, _ in named], dim=1, out=out)
    return losses
