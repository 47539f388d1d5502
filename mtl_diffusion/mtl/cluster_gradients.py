"""Exact per-cluster gradients of a denoising loss, three ways.

Layout: sample b of a batch of B belongs to cluster b mod k (clusters interleaved), so every
cluster has B // k or B // k + 1 samples (the first B mod k clusters get the extra one), and
the first k * (B // k) samples viewed as (B // k, k, ...) hold one sample of every cluster per
row. The loss of cluster i is L_i = (1 / B) sum over its samples of weight_b * mse_b, so
sum_i L_i is the batch mean of the weighted per-sample loss (ANT's "mean of chunk i divided by
k" whenever k divides B). Each L_i depends on its own samples only because the denoisers have
no coupling between samples (GroupNorm / LayerNorm, no BatchNorm); every path relies on it:

- "fast": ONE forward and ONE backward of the whole batch, as vanilla training. Forward hooks
  record each layer's input; the backward computes no weight gradients (it runs down to the
  first layers' inputs, made leaves) and, as each layer's output gradient arrives, a tensor
  hook forms that layer's per-cluster weight gradients from (input, output gradient) at the
  cost of vanilla's weight gradients: thanks to the layout, (B, C, ...) viewed as
  (B // k, k C, ...) is, at no copy, one convolution with k times as many groups. Supports
  Linear, Conv1d/2d/3d, GroupNorm and LayerNorm (anything else: use another path).
- "vmap": torch.func vmap(grad(functional_call)) over the clusters (zero-padded to equal size
  with zero loss weight when k does not divide B).
- "reference": k autograd.grad calls through the whole batch's graph (slow; for tests).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

PATHS = ("fast", "vmap", "reference")
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
SUPPORTED = (nn.Linear, *CONVS, nn.GroupNorm, nn.LayerNorm)


@dataclass
class DenoisingBatch:
    """One minibatch: the model sees (x_t, t) and regresses `target`; sample b has loss weight
    `weight[b]` and belongs to cluster b mod `num_clusters`."""

    x_t: Tensor
    t: Tensor
    target: Tensor
    weight: Tensor
    num_clusters: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.num_clusters <= len(self.x_t):
            raise ValueError(
                f"num_clusters must be in 1..B={len(self.x_t)} (every cluster in the batch), "
                f"got {self.num_clusters}"
            )

    @property
    def clusters(self) -> Tensor:
        """Cluster index of every sample, (B,)."""
        return torch.arange(len(self.x_t), device=self.x_t.device) % self.num_clusters


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


def sample_losses(output: Tensor, batch: DenoisingBatch) -> Tensor:
    """weight_b * mean squared error of sample b, (B,)."""
    return batch.weight * ((output - batch.target) ** 2).flatten(1).mean(dim=1)


def cluster_losses(per_sample: Tensor, batch: DenoisingBatch) -> Tensor:
    """L_i = (1 / B) sum over the samples of cluster i of the per-sample losses, (k,)."""
    return cluster_sum(per_sample, batch.num_clusters) / len(per_sample)


def cluster_sum(v: Tensor, k: int) -> Tensor:
    """(B, ...) -> (k, ...): the sum over the samples of each cluster (b mod k)."""
    return v.new_zeros(k, *v.shape[1:]).index_add_(0, _cluster_index(len(v), k, v.device), v)


@functools.lru_cache(maxsize=16)
def _cluster_index(batch_size: int, k: int, device: torch.device) -> Tensor:
    return torch.arange(batch_size, device=device) % k


def by_cluster(v: Tensor, k: int) -> Tensor:
    """(B, ...) -> (k, ceil(B / k), ...): the samples of each cluster; missing rows are zero."""
    n, extra = divmod(len(v), k)
    main = v[: n * k].reshape(n, k, *v.shape[1:]).transpose(0, 1)
    if not extra:
        return main
    last = v.new_zeros(k, 1, *v.shape[1:])
    last[:extra, 0] = v[n * k :]
    return torch.cat([main, last], dim=1)


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that receive gradients, in model.parameters() order."""
    return [p for p in model.parameters() if p.requires_grad]


def check_fast_path(model: nn.Module) -> None:
    """Raise ValueError unless the "fast" path covers every trainable parameter of `model`."""
    for name, module in model.named_modules():
        own = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not isinstance(module, SUPPORTED) or set(own) - {"weight", "bias"}:
            raise ValueError(
                f"gradient_path='fast' supports parameters of {[c.__name__ for c in SUPPORTED]} "
                f"only; {name or 'the model'} ({type(module).__name__}) has {own}: use "
                "gradient_path='vmap' or 'reference'"
            )
        if isinstance(module, CONVS) and (
            isinstance(module.padding, str) or module.padding_mode != "zeros"
        ):
            raise ValueError(
                f"gradient_path='fast' needs integer zero padding in {name}; use 'vmap' or "
                "'reference'"
            )


def cluster_gradients(
    model: nn.Module, batch: DenoisingBatch, path: str, out: Tensor | None = None
) -> ClusterGradients:
    """Per-cluster losses and gradients of `model` on `batch` by the chosen path (see PATHS).

    `out`, a (k, P) buffer reused across steps, receives the gradients (saves reallocating
    k copies of the model's gradient every step); None allocates it.
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    params = trainable(model)
    shapes = [p.shape for p in params]
    size = (batch.num_clusters, sum(p.numel() for p in params))
    if out is None:
        out = params[0].new_empty(size)
    elif out.shape != size:
        raise ValueError(f"out must have shape {size}, got {tuple(out.shape)}")
    if path == "fast":
        losses = _fast(model, batch, params, out)
    elif path == "vmap":
        losses = _vmap(model, batch, out)
    else:
        losses = _reference(model, batch, params, out)
    return ClusterGradients(losses.detach(), out, shapes)


def _reference(model: nn.Module, batch: DenoisingBatch, params: list, out: Tensor) -> Tensor:
    losses = cluster_losses(sample_losses(model(batch.x_t, batch.t), batch), batch)
    for i in range(len(losses)):
        grads = torch.autograd.grad(losses[i], params, retain_graph=i + 1 < len(losses))
        torch.cat([g.reshape(-1) for g in grads], out=out[i])
    return losses


def _vmap(model: nn.Module, batch: DenoisingBatch, out: Tensor) -> Tensor:
    named = [(name, p.detach()) for name, p in model.named_parameters() if p.requires_grad]
    size = len(batch.x_t)

    def cluster_loss(params: dict[str, Tensor], x_t, t, target, weight):
        output = functional_call(model, params, (x_t, t))
        loss = (weight * ((output - target) ** 2).flatten(1).mean(dim=1)).sum() / size
        return loss, loss

    tensors = (batch.x_t, batch.t, batch.target, batch.weight)  # padded rows: weight 0
    per_cluster = vmap(
        grad(cluster_loss, has_aux=True), in_dims=(None, 0, 0, 0, 0), randomness="different"
    )
    grads, losses = per_cluster(dict(named), *[by_cluster(v, batch.num_clusters) for v in tensors])
    torch.cat([grads[name].reshape(len(out), -1) for name, _ in named], dim=1, out=out)
    return losses


def _fast(model: nn.Module, batch: DenoisingBatch, params: list, out: Tensor) -> Tensor:
    k = batch.num_clusters
    columns, start = {}, 0  # id(parameter) -> its columns of `out`
    for p in params:
        columns[id(p)] = slice(start, start + p.numel())
        start += p.numel()
    written: set[int] = set()
    leaves: list[Tensor] = []  # inputs of the first layers: the backward runs down to them

    def make_leaf(module: nn.Module, args: tuple) -> tuple | None:
        if args[0].requires_grad:
            return None
        leaves.append(args[0].detach().requires_grad_())
        return (leaves[-1], *args[1:])

    def on_output(module: nn.Module, args: tuple, output: Tensor) -> None:
        x = args[0].detach()

        def on_grad(g: Tensor) -> None:  # runs during the backward; g is freed after it
            for param, value, m in _layer_gradients(module, x, g, k):
                if not param.requires_grad:
                    continue
                target = out[:m, columns[id(param)]]
                if id(param) in written:  # a second part, or a layer called twice
                    target.add_(value.reshape(m, -1))
                else:
                    target.copy_(value.reshape(m, -1))
                    written.add(id(param))

        output.register_hook(on_grad)

    layers = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(False))]
    hooks = [m.register_forward_pre_hook(make_leaf) for m in layers]
    hooks += [m.register_forward_hook(on_output) for m in layers]
    try:
        output = model(batch.x_t, batch.t)
    finally:
        for hook in hooks:
            hook.remove()
    losses = cluster_losses(sample_losses(output, batch), batch)
    torch.autograd.grad(losses.sum(), leaves, allow_unused=True)
    for p in params:
        if id(p) not in written:  # no path from this parameter to the loss
            out[:, columns[id(p)]] = 0.0
    return losses


Part = tuple[nn.Parameter, Tensor, int]  # (parameter, gradients of its first m clusters, m)


def _layer_gradients(module: nn.Module, x: Tensor, g: Tensor, k: int) -> list[Part]:
    """Per-cluster gradients of the parameters of one call of `module`, whose input was `x`
    and whose output received the loss gradient `g`; a parameter may come in two parts (all k
    clusters, then its first m clusters again), to be added."""
    if isinstance(module, CONVS):
        return _conv(module, x, g, k)
    if isinstance(module, nn.Linear):
        grads = _linear_grads(x, g, k)
    else:
        if isinstance(module, nn.GroupNorm):
            normed = F.group_norm(x, module.num_groups, eps=module.eps)
            per_channel = (len(x), x.shape[1], -1)
            per_sample = (g * normed).reshape(per_channel).sum(2), g.reshape(per_channel).sum(2)
        else:  # LayerNorm
            shape = module.normalized_shape
            normed = F.layer_norm(x, shape, eps=module.eps)
            per_sample = (
                (g * normed).reshape(len(x), -1, *shape).sum(1),
                g.reshape(len(x), -1, *shape).sum(1),
            )
        grads = [cluster_sum(v, k) for v in per_sample]
    return [(p, v, k) for p, v in zip(_params(module), grads, strict=False)]


def _linear_grads(x: Tensor, g: Tensor, k: int) -> list[Tensor]:
    """Per-cluster weight (k, out, in) and bias (k, out) gradients of a linear map x -> g over
    the last dimension of (B, ..., in) inputs and (B, ..., out) output gradients."""
    xs = by_cluster(x, k).reshape(k, -1, x.shape[-1])
    gs = by_cluster(g, k).reshape(k, -1, g.shape[-1])  # padded rows: g = 0, no effect
    return [gs.transpose(1, 2) @ xs, gs.sum(1)]


def _params(module: nn.Module) -> list[nn.Parameter]:
    """weight, then bias if the module has one."""
    return [module.weight] + ([module.bias] if module.bias is not None else [])


def _conv(module: nn.Module, x: Tensor, g: Tensor, k: int) -> list[Part]:
    """Per-cluster weight and bias gradients of a convolution, by the fastest exact route:

    pointwise (1x1, stride 1, no padding, one group): a linear map over channels; few output
    channels per group (< 8, e.g. the output layer): one weight gradient call per cluster;
    otherwise the first k (B // k) samples viewed as (B // k, k C, ...) make ONE convolution with
    k times the groups, plus, for the B mod k remaining samples, a matrix product with their
    unfolded patches (2-D, one group) or one more convolution.
    """
    weight, params = module.weight, _params(module)
    pointwise = all(v == 1 for v in (*module.kernel_size, *module.stride)) and not any(
        module.padding
    )
    if pointwise and module.groups == 1:
        channels_last = [v.flatten(2).transpose(1, 2) for v in (x, g)]  # (B, positions, C)
        weight_grad, bias_grad = _linear_grads(*channels_last, k)
        grads = weight_grad.reshape(k, *weight.shape), bias_grad
        return [(p, v, k) for p, v in zip(params, grads, strict=False)]
    if weight.shape[0] // module.groups < 8:
        weight_grad = torch.stack([_conv_grads(module, x[i::k], g[i::k], 1)[0] for i in range(k)])
        bias_grad = cluster_sum(g.reshape(len(g), g.shape[1], -1).sum(2), k)
        return [(p, v, k) for p, v in zip(params, (weight_grad, bias_grad), strict=False)]
    n = len(x) // k
    stacked = [v[: n * k].reshape(n, k * v.shape[1], *v.shape[2:]) for v in (x, g)]
    parts = [(p, v, k) for p, v in zip(params, _conv_grads(module, *stacked, k), strict=False)]
    rest = len(x) - n * k  # one sample each for clusters 0 .. rest - 1
    if rest and isinstance(module, nn.Conv2d) and module.groups == 1:
        cols = F.unfold(
            x[n * k :], module.kernel_size, module.dilation, module.padding, module.stride
        )
        weight_grad = torch.bmm(g[n * k :].flatten(2), cols.transpose(1, 2))
        grads = weight_grad.reshape(rest, *weight.shape), g[n * k :].flatten(2).sum(2)
        parts += [(p, v, rest) for p, v in zip(params, grads, strict=False)]
    elif rest:
        stacked = [v[n * k :].reshape(1, rest * v.shape[1], *v.shape[2:]) for v in (x, g)]
        parts += [
            (p, v, rest) for p, v in zip(params, _conv_grads(module, *stacked, rest), strict=False)
        ]
    return parts


def _conv_grads(module: nn.Module, x: Tensor, g: Tensor, copies: int) -> tuple[Tensor, Tensor]:
    """Weight and bias gradients of `copies` side-by-side copies of module's convolution
    (channel-stacked x and g): (copies, *weight.shape) and (copies, out)."""
    shape = (copies * module.weight.shape[0], *module.weight.shape[1:])
    _, weight_grad, bias_grad = torch.ops.aten.convolution_backward(
        g,
        x,
        x.new_empty(shape),
        [shape[0]],
        module.stride,
        module.padding,
        module.dilation,
        False,
        [0] * (x.dim() - 2),
        copies * module.groups,
        [False, True, True],
    )
    return weight_grad.reshape(copies, *module.weight.shape), bias_grad.reshape(copies, -1)
