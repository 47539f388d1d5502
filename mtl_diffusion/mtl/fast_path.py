"""The "fast" per-cluster gradient path: ONE forward and ONE backward of the whole batch.

The batch is first put in interleaved, equal-size layout (mtl.batch.pad_interleaved: row
r * k + i is the r-th sample of cluster i; short clusters repeat a sample whose loss is masked
to zero). Hooks then record each parameterised layer's input; the backward computes no weight
gradients (it runs down to the first layers' inputs, made leaves) and, as each layer's output
gradient arrives, a tensor hook forms that layer's k per-cluster weight gradients from (input,
output gradient): thanks to the layout, (k n, C, ...) viewed as (n, k C, ...) is, at no copy,
one convolution with k times the groups. Exact for nn.Linear, Conv1d/2d/3d, GroupNorm,
LayerNorm, RMSNorm and Embedding called on the batch with torch's own forward.

Exact or refuse: :func:`check_fast_path` refuses what the capture cannot see (other layer types,
overridden forwards, backward hooks, global forward hooks, BatchNorm in training mode, non-zero
padding modes); during the capture every layer input and output must have the batch as its first
dimension and no input may be modified in place before the backward; with ``audit`` a
TorchFunctionMode also refuses any use of a trainable parameter outside its own layer's forward
(weight tying through F.linear, a parameter in the loss, ...). What no structural check can see
(samples coupled inside the model, a permuted batch dimension) is left to the engine's
first-batch comparison with the reference path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
import torch.nn.modules.module as module_hooks
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from mtl_diffusion.mtl.batch import Forward, PaddedBatch, SampleLoss

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)
SUPPORTED = (nn.Linear, *CONVS, *NORMS, nn.Embedding)
OTHER_PATHS = "use gradient_path='vmap' or 'reference' (exact for any per-sample model)"


class FastPathError(ValueError):
    """The fast path cannot give exact per-cluster gradients for this model or call."""


def _refuse(name: str, why: str) -> FastPathError:
    return FastPathError(
        f"gradient_path='fast' cannot handle {name or 'the model'}: {why}; {OTHER_PATHS}"
    )


def _base(module: nn.Module) -> type | None:
    return next((base for base in SUPPORTED if isinstance(module, base)), None)


def check_fast_path(model: nn.Module) -> None:
    """Raise FastPathError unless the fast path's capture covers every trainable parameter."""
    if module_hooks._global_forward_hooks or module_hooks._global_backward_hooks:
        raise _refuse(
            "the model", "global module hooks are registered (they run before the capture)"
        )
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise _refuse(name, f"{type(module).__name__} in training mode couples the samples")
        own = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        base = _base(module)
        if base is None or set(own) - {"weight", "bias"}:
            raise _refuse(
                name,
                f"{type(module).__name__} has trainable {own}; supported: "
                f"{[c.__name__ for c in SUPPORTED]} (weight and bias)",
            )
        if "forward" in vars(module):
            raise _refuse(name, "its forward is replaced on the instance (a patch or adapter)")
        if type(module).forward is not base.forward or (
            isinstance(module, CONVS) and type(module)._conv_forward is not base._conv_forward
        ):
            raise _refuse(name, f"{type(module).__name__} overrides the forward of {base.__name__}")
        if module._backward_hooks or module._backward_pre_hooks:
            raise _refuse(name, "it has backward hooks")
        if isinstance(module, CONVS) and (
            isinstance(module.padding, str) or module.padding_mode != "zeros"
        ):
            raise _refuse(name, "it needs integer zero padding")
        if isinstance(module, nn.Embedding) and (
            module.max_norm is not None or module.sparse or module.scale_grad_by_freq
        ):
            raise _refuse(
                name, "max_norm, sparse and scale_grad_by_freq embeddings are not supported"
            )


# Reading a parameter's metadata (x.to(self.conv.weight.dtype)) is not a use of its values.
METADATA = {
    "size",
    "dim",
    "ndimension",
    "numel",
    "nelement",
    "stride",
    "storage_offset",
    "is_floating_point",
    "is_complex",
    "is_contiguous",
    "element_size",
    "get_device",
    "data_ptr",
    "__hash__",
    "__len__",
    "__repr__",
    "__format__",
}
METADATA_PROPERTIES = {
    "dtype",
    "device",
    "shape",
    "requires_grad",
    "is_cuda",
    "is_leaf",
    "layout",
    "ndim",
    "is_sparse",
    "is_quantized",
    "is_meta",
    "itemsize",
    "nbytes",
    "grad_fn",
    "names",
}


def _reads_metadata(func: Any, args: tuple = ()) -> bool:
    name = getattr(func, "__name__", "")
    if name in ("type_as", "to") and args and not isinstance(args[0], nn.Parameter):
        return True  # x.type_as(weight), x.to(weight): the parameter's dtype and device only
    if name == "__get__":
        return getattr(getattr(func, "__self__", None), "__name__", "") in METADATA_PROPERTIES
    return name in METADATA


class _ParameterUse(TorchFunctionMode):
    """Refuses a trainable parameter used by an op outside the forward of a layer that owns it."""

    def __init__(self, owners: dict[int, tuple[str, set[int]]], active: list[nn.Module]) -> None:
        super().__init__()
        self.owners, self.active = owners, active

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if _reads_metadata(func, args):
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name == "batch_norm" and _batch_norm_training(args, kwargs):
            where = self.active[-1] if self.active else None
            raise _refuse(
                type(where).__name__ if where is not None else "the model",
                "batch_norm in training mode couples the samples",
            )
        for value in _tensors(args, kwargs):
            entry = self.owners.get(id(value))
            if entry is not None and not (self.active and id(self.active[-1]) in entry[1]):
                where = (
                    f"inside {type(self.active[-1]).__name__}"
                    if self.active
                    else "outside any layer"
                )
                raise _refuse(
                    entry[0],
                    f"the parameter is used by {getattr(func, '__name__', func)} {where}, not "
                    "by its own layer's forward",
                )
        return func(*args, **kwargs)


def _batch_norm_training(args: tuple, kwargs: dict) -> bool:
    """F.batch_norm(input, running_mean, running_var, weight, bias, training, ...)."""
    if "training" in kwargs:
        return bool(kwargs["training"])
    return len(args) > 5 and bool(args[5])


def _tensors(args: tuple, kwargs: dict) -> Iterator[Tensor]:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, Tensor))


def fast_gradients(
    model: nn.Module,
    padded: PaddedBatch,
    forward: Forward,
    loss: SampleLoss,
    params: list[nn.Parameter],
    out: Tensor,
    audit: bool = True,
) -> Tensor:
    """Fill `out` (k, P) with the per-cluster gradients; return the cluster losses (k,)."""
    check_fast_path(model)
    batch, k = padded.batch, padded.batch.num_clusters
    rows = len(batch.x_t)
    columns, start = {}, 0  # id(parameter) -> its columns of `out`
    for p in params:
        columns[id(p)] = slice(start, start + p.numel())
        start += p.numel()
    names = {id(p): n for n, p in model.named_parameters()}
    written: set[int] = set()
    leaves: list[Tensor] = []
    fired: list[bool] = []  # per hooked call: did its backward node run
    captured: list[tuple[str, Tensor]] = []  # audit: every hooked call's output
    active: list[nn.Module] = []
    layers = {
        n: m for n, m in model.named_modules() if any(p.requires_grad for p in m.parameters(False))
    }
    layer_names = {id(m): n for n, m in layers.items()}

    def batch_first(module: nn.Module, value: Any, what: str) -> Tensor:
        if not isinstance(value, Tensor) or value.dim() == 0 or len(value) != rows:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise _refuse(
                layer_names[id(module)],
                f"its {what} has shape {shape}, not the batch first ({rows} rows: the samples "
                "grouped by cluster); a reshaped or transposed batch, or conditioning shared by "
                "the batch, puts several samples in a row",
            )
        return value

    def on_input(module: nn.Module, args: tuple) -> tuple | None:
        x = batch_first(module, args[0] if args else None, "input")
        active.append(module)
        if x.requires_grad or not x.is_floating_point():
            return None
        leaves.append(x.detach().requires_grad_())
        return (leaves[-1], *args[1:])

    def on_output(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
        active.pop()
        batch_first(module, output, "output")
        x = args[0].detach()
        version = args[0]._version
        replaced = None
        if isinstance(module, nn.Embedding) and output.requires_grad:
            leaf = output.detach().requires_grad_()  # integer input: the backward ends here
            leaves.append(leaf)
            replaced = output = leaf.clone()  # a non-leaf, so that callers may edit it in place
        elif not output.requires_grad:
            return None  # computed without grad: no gradient reaches this call
        call = len(fired)
        fired.append(False)
        if audit:
            captured.append((layer_names[id(module)], output))

        def on_grad(grads: tuple) -> None:  # the layer's own backward node is about to run
            g = grads[index]
            fired[call] = True
            if g is None:
                return
            if args[0]._version != version:
                raise _refuse(
                    layer_names[id(module)], "its input was modified in place after the call"
                )
            for param, value in zip(
                _params(module), _layer_gradients(module, x, g.to(out.dtype), k), strict=False
            ):
                if not param.requires_grad:
                    continue
                target = out[:, columns[id(param)]]
                if id(param) in written:  # a layer called twice, or a tied parameter
                    target.add_(value.reshape(k, -1))
                else:
                    target.copy_(value.reshape(k, -1))
                    written.add(id(param))

        # A pre-hook of the layer's own backward node sees the gradient after every tensor hook
        # on the output: exactly what the layer's weight gradient is computed from.
        index = output.output_nr
        output.grad_fn.register_prehook(on_grad)
        return replaced

    handles: list[RemovableHandle] = []
    for module in layers.values():
        handles.append(module.register_forward_pre_hook(on_input))
        handles.append(module.register_forward_hook(on_output, prepend=True))
    owners: dict[int, tuple[str, set[int]]] = {}  # the audit's map (first batch only)
    for module in layers.values() if audit else ():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                owners.setdefault(id(p), (names.get(id(p), "a parameter"), set()))[1].add(
                    id(module)
                )
    data = {n: v.detach() for n, v in batch.cond.items()}  # only the model's parameters count
    try:
        with _ParameterUse(owners, active) if audit else contextlib.nullcontext():
            output = forward(model, batch.x_t.detach(), batch.t, **data)
            per_sample = check_sample_losses(loss(output, batch), rows)
    finally:
        for handle in handles:
            handle.remove()
    per_sample = torch.where(padded.real, per_sample, torch.zeros_like(per_sample))
    losses = per_sample.reshape(padded.rows, k).sum(0) / padded.size
    if leaves:
        torch.autograd.grad(losses.sum(), leaves, allow_unused=True, retain_graph=audit)
    if audit:
        _check_every_path_followed(losses, captured, fired)
    for p in params:
        if id(p) not in written:  # no path from this parameter to the loss
            out[:, columns[id(p)]] = 0.0
    return losses


def check_sample_losses(per_sample: Tensor, size: int) -> Tensor:
    """The loss function's output must be one loss per sample, (B,)."""
    if not isinstance(per_sample, Tensor) or per_sample.shape != (size,):
        shape = tuple(per_sample.shape) if isinstance(per_sample, Tensor) else type(per_sample)
        raise ValueError(f"the loss must return one value per sample, shape ({size},); got {shape}")
    return per_sample


def _check_every_path_followed(
    losses: Tensor, captured: list[tuple[str, Tensor]], fired: list[bool]
) -> None:
    """Refuse a layer whose gradient the capture's backward never reached although the loss
    depends on it (its input came from a trainable computation outside the batch)."""
    missed = [(name, out) for (name, out), done in zip(captured, fired, strict=True) if not done]
    if missed:
        grads = torch.autograd.grad(losses.sum(), [o for _, o in missed], allow_unused=True)
        for (name, _), g in zip(missed, grads, strict=True):
            if g is not None and bool(g.abs().sum() > 0):
                raise _refuse(
                    name,
                    "its input depends on trainable tensors from outside the batch (an encoder "
                    "called in the forward function?), which the capture cannot follow; put them "
                    "in the model or detach them",
                )


def _params(module: nn.Module) -> list[nn.Parameter]:
    """weight, then bias if the module has one."""
    bias = getattr(module, "bias", None)
    return [module.weight] + ([bias] if bias is not None else [])


def _by_cluster(v: Tensor, k: int) -> Tensor:
    """(n k, ...) interleaved -> (k, n, ...) (a view)."""
    return v.reshape(len(v) // k, k, *v.shape[1:]).transpose(0, 1)


def _cluster_sum(v: Tensor, k: int) -> Tensor:
    """(n k, ...) interleaved -> (k, ...): the sum over each cluster's rows."""
    return v.reshape(len(v) // k, k, *v.shape[1:]).sum(0)


def _layer_gradients(module: nn.Module, x: Tensor, g: Tensor, k: int) -> list[Tensor]:
    """Per-cluster gradients (k, *shape) of weight (and bias) of one call of `module`, whose
    input was `x` and whose output received the loss gradient `g`."""
    if isinstance(module, CONVS):
        return _conv(module, x.to(g.dtype), g, k)
    if isinstance(module, nn.Linear):
        return _linear_grads(x.to(g.dtype), g, k)
    if isinstance(module, nn.Embedding):
        flat = (
            x
            + module.num_embeddings
            * torch.arange(len(x), device=x.device).remainder(k).view(-1, *[1] * (x.dim() - 1))
        ).flatten()
        weight = g.new_zeros(k * module.num_embeddings, module.embedding_dim)
        weight.index_add_(0, flat, g.reshape(-1, module.embedding_dim))
        weight = weight.view(k, *module.weight.shape)
        if module.padding_idx is not None:
            weight[:, module.padding_idx] = 0.0
        return [weight]
    x = x.to(g.dtype)
    if isinstance(module, nn.GroupNorm):
        normed = F.group_norm(x, module.num_groups, eps=module.eps)
        per_channel = (len(x), x.shape[1], -1)
        per_sample = (g * normed).reshape(per_channel).sum(2), g.reshape(per_channel).sum(2)
    else:
        shape = module.normalized_shape
        if isinstance(module, nn.LayerNorm):
            normed = F.layer_norm(x, shape, eps=module.eps)
        else:
            normed = F.rms_norm(x, shape, eps=module.eps)
        per_sample = (
            (g * normed).reshape(len(x), -1, *shape).sum(1),
            g.reshape(len(x), -1, *shape).sum(1),
        )
    return [_cluster_sum(v, k) for v in per_sample]


def _linear_grads(x: Tensor, g: Tensor, k: int) -> list[Tensor]:
    """Per-cluster weight (k, out, in) and bias (k, out) gradients of a linear map x -> g over
    the last dimension of (n k, ..., in) inputs and (n k, ..., out) output gradients."""
    xs = _by_cluster(x, k).reshape(k, -1, x.shape[-1])
    gs = _by_cluster(g, k).reshape(k, -1, g.shape[-1])
    return [gs.transpose(1, 2) @ xs, gs.sum(1)]


def _conv(module: nn.Module, x: Tensor, g: Tensor, k: int) -> list[Tensor]:
    """Per-cluster weight and bias gradients of a convolution, by the fastest exact route:

    pointwise (1x1, stride 1, no padding, one group): a linear map over channels; few output
    channels per group (< 8, e.g. the output layer): one weight gradient call per cluster;
    otherwise (n k, C, ...) viewed as (n, k C, ...) makes ONE convolution with k times the groups.
    """
    weight = module.weight
    pointwise = all(v == 1 for v in (*module.kernel_size, *module.stride)) and not any(
        module.padding
    )
    if pointwise and module.groups == 1:
        channels_last = [v.flatten(2).transpose(1, 2) for v in (x, g)]  # (B, positions, C)
        weight_grad, bias_grad = _linear_grads(*channels_last, k)
        return [weight_grad.reshape(k, *weight.shape), bias_grad]
    if weight.shape[0] // module.groups < 8:
        weight_grad = torch.stack(
            [_conv_grads(module, x[i::k], g[i::k], 1)[0][0] for i in range(k)]
        )
        bias_grad = _cluster_sum(g.reshape(len(g), g.shape[1], -1).sum(2), k)
        return [weight_grad, bias_grad]
    n = len(x) // k
    stacked = [v.reshape(n, k * v.shape[1], *v.shape[2:]) for v in (x, g)]
    return list(_conv_grads(module, *stacked, k))


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
