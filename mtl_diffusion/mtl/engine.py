"""The per-cluster MTL engine: from a batch with cluster ids to an objective for YOUR backward.

    engine = MTLEngine(model, "pcgrad", k, forward=my_forward)      # Config-free
    engine.attach(optimizer)                                          # UW / FAMO parameters
    with torch.autocast("cuda", torch.bfloat16):
        step = engine.objective(batch, loss_scale=scaler.get_scale())
    scaler.scale(step.objective).backward()                          # or step.objective.backward()
    scaler.step(optimizer); scaler.update(); engine.after_step(batch)

The backward of `step.objective` ADDS the method's update to p.grad, like a loss would, so
autocast, a GradScaler, gradient accumulation over micro-batches (divide by their number) and
your own clipping compose with every method. Loss-based methods (vanilla, uw, famo, dwa):
the objective is their combined loss sum_i w_i L_i (uncertainty weighting: its own objective).
Gradient methods (pcgrad, nash, mgda, imtlg, cagrad): the engine computes the k per-cluster
gradients g_i (see cluster_gradients), the Gramian G = g g^T in float32 or wider, weights
w = method(G) and the update u = sum_i w_i g_i; the objective is a surrogate whose gradient is u
(its value is not a loss: read `step.stats`). NashMTL re-solves every `nash_every` calls and in
between reuses alpha (the update is then grad of sum_i alpha_i L_i, one plain backward); its
update is clipped at `nash_max_norm`, as published.

Data parallel (torchrun): give each rank its B / W share of the global batch and
`sync=RankAverage()` (mtl.distributed). Loss-based methods: the engine's model is the
DistributedDataParallel wrapper; the cluster losses' values are averaged over ranks so that
the weights (and UW's log-variances) are the same everywhere, and DDP averages the gradient.
Gradient methods: the plain model (no DDP wrapper); the k per-cluster gradients are averaged
over ranks in buckets before the Gramian, so every rank takes the single-process update of the
global batch.

Exact or refuse: on its first gradient batch the engine compares the fast path with the
reference path (k separate passes, one per cluster over its own samples), in eval mode, with
autocast off and the random state restored, and raises FastPathMismatchError naming the
parameters that differ (`self_check=False` skips it). `weights` recorded per step are the
multipliers of grad L_i in the update (uncertainty weighting: 0.5 exp(-s_i); Nash: alpha).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from mtl_diffusion.mtl.batch import (
    DenoisingBatch,
    Forward,
    SampleLoss,
    call_model,
    cluster_losses,
    weighted_mse,
)
from mtl_diffusion.mtl.cluster_gradients import PATHS, cluster_gradients, trainable
from mtl_diffusion.mtl.distributed import RankAverage
from mtl_diffusion.mtl.fast_path import FastPathError, check_fast_path
from mtl_diffusion.mtl.registry import get_method


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss or gradient."""


class FastPathMismatchError(FastPathError):
    """The fast path's per-cluster gradients differ from the reference path's on this model."""


@dataclass
class StepStats:
    """What one step produced: batch-mean loss, cluster losses L_i and their weights w_i."""

    loss: float
    cluster_losses: list[float]
    weights: list[float]


@dataclass
class EngineStep:
    """`objective`: call backward on it (through your GradScaler if any) to add the update to
    p.grad; `stats`: the step's losses and weights."""

    objective: Tensor
    stats: StepStats


class MTLEngine:
    """The MTL method `method` over `num_clusters` clusters for `model` (see module doc).

    `forward(model, x_t, t, **batch.cond)` calls the model on a (sub-)batch and returns the
    prediction; `loss(output, batch)` is the per-sample loss (default: weighted MSE).
    """

    def __init__(
        self,
        model: nn.Module,
        method: str,
        num_clusters: int,
        *,
        forward: Forward = call_model,
        loss: SampleLoss = weighted_mse,
        path: str = "fast",
        self_check: bool = True,
        check_tolerance: float = 1e-3,
        seed: int = 0,
        uw_lr: float = 0.025,
        nash_every: int = 25,
        nash_max_norm: float = 1.0,
        options: dict[str, Any] | None = None,
        sync: RankAverage | None = None,
    ) -> None:
        self.spec = get_method(method)
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if isinstance(num_clusters, bool) or not isinstance(num_clusters, int) or num_clusters < 1:
            raise ValueError(f"num_clusters must be an integer >= 1, got {num_clusters!r}")
        if not isinstance(nash_every, int) or nash_every < 1:
            raise ValueError(f"nash_every must be an integer >= 1, got {nash_every!r}")
        if not nash_max_norm >= 0:
            raise ValueError(f"nash_max_norm must be >= 0 (0 disables), got {nash_max_norm}")
        if not uw_lr > 0 or uw_lr == float("inf"):
            raise ValueError(f"uw_lr must be a finite number > 0, got {uw_lr}")
        if not check_tolerance > 0:
            raise ValueError(f"check_tolerance must be > 0, got {check_tolerance}")
        if not trainable(model):
            raise ValueError("the model has no trainable parameters")
        if isinstance(model, DistributedDataParallel):
            if self.spec.kind == "gradient":
                raise ValueError(
                    f"mtl method {method!r} computes per-cluster gradients itself: pass the plain "
                    "module (not DistributedDataParallel) and sync=RankAverage(), which averages "
                    "them over ranks before the Gramian"
                )
            if sync is None and method != "vanilla":
                raise ValueError(
                    f"mtl method {method!r} under DistributedDataParallel needs "
                    "sync=RankAverage(): its weights come from the cluster losses, which must be "
                    "averaged over ranks to stay the same on every rank"
                )
        if self.spec.kind == "gradient" and path == "fast":
            check_fast_path(model)
        self.model, self.k, self.path = model, num_clusters, path
        self.forward, self.loss, self.sync = forward, loss, sync
        self.self_check, self.check_tolerance = self_check, check_tolerance
        self.uw_lr, self.nash_every, self.nash_max_norm = uw_lr, nash_every, nash_max_norm
        self.method = self.spec.build(num_clusters, **(options or {}))
        if isinstance(self.method, nn.Module):  # UW's and FAMO's parameters live with the model's
            self.method.to(next(model.parameters()).device)
        self.generator = torch.Generator().manual_seed(seed)  # PCGrad's random orders
        self.calls = 0
        self.checked = False  # the fast path was compared with the reference (once a process)
        self._attached = not self.spec.trainable
        self._awaiting_update = False  # FAMO: objective() given, after_step() not yet called
        self._grads: Tensor | None = None  # per-cluster gradients, reused across steps

    # --- optimizer -----------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups of the method's own parameters (uncertainty weighting)."""
        return [self.method.param_group(self.uw_lr)] if self.spec.trainable else []

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Make sure `optimizer` updates the method's own parameters (adds their group when
        absent). Required before the first step of a method that has parameters (uw)."""
        if not self.spec.trainable:
            return
        present = {id(p) for group in optimizer.param_groups for p in group["params"]}
        own = [p for group in self.param_groups() for p in group["params"]]
        if not any(id(p) in present for p in own):
            for group in self.param_groups():
                optimizer.add_param_group(group)
        elif not all(id(p) in present for p in own):
            raise ValueError(f"the optimizer holds only some of {self.spec.name}'s parameters")
        self._attached = True

    # --- one step -----------------------------------------------------------------------------
    def objective(self, batch: DenoisingBatch, *, loss_scale: float = 1.0) -> EngineStep:
        """The objective whose backward adds this batch's update to p.grad (see module doc).

        `loss_scale`: the GradScaler's current scale (fp16), used for the engine's own
        backward of gradient methods; a non-finite scaled loss or gradient then gives a
        non-finite update that the scaler skips. Without a scaler (1.0) they raise
        NonFiniteLossError.
        """
        if batch.num_clusters != self.k:
            raise ValueError(f"batch has {batch.num_clusters} clusters, the engine {self.k}")
        if not self._attached:
            raise RuntimeError(
                f"mtl method {self.spec.name!r} has parameters of its own that no optimizer "
                "updates: call engine.attach(optimizer) (it adds engine.param_groups(), or checks "
                "that you added them)"
            )
        if self._awaiting_update:
            raise RuntimeError(
                f"mtl method {self.spec.name!r} learns its weights from the loss decrease of "
                "each step: call engine.after_step(batch) after optimizer.step(), once per "
                "objective"
            )
        if not loss_scale > 0 or loss_scale == float("inf"):
            raise ValueError(f"loss_scale must be a finite number > 0, got {loss_scale}")
        self.calls += 1
        if self.spec.kind == "loss":
            return self._loss_step(batch)
        if self._reusing():
            return self._reuse_step(batch, loss_scale)
        return self._gradient_step(batch, loss_scale)

    def backward(self, batch: DenoisingBatch) -> StepStats:
        """objective(batch).backward(): adds the update to p.grad; returns the stats."""
        step = self.objective(batch)
        step.objective.backward()
        return step.stats

    def after_step(self, batch: DenoisingBatch) -> None:
        """After the optimizer step: FAMO re-measures the losses on the same batch."""
        if self.spec.needs_update:
            with torch.no_grad():
                output = self.forward(self.model, batch.x_t, batch.t, **batch.cond)
                losses = cluster_losses(self.loss(output, batch), batch)
                self.method.update(losses if self.sync is None else self.sync(losses.clone()))
            self._awaiting_update = False

    def _reusing(self) -> bool:
        """NashMTL between re-solves: reuse its last alpha."""
        due = (self.calls - 1) % self.nash_every == 0
        return self.spec.name == "nash" and self.method.alpha is not None and not due

    def _losses(self, batch: DenoisingBatch) -> Tensor:
        output = self.forward(self.model, batch.x_t, batch.t, **batch.cond)
        losses = cluster_losses(self.loss(output, batch), batch)
        if self.sync is not None:  # the global losses' value, this rank's gradient
            losses = self.sync.straight_through(losses)
        if not torch.isfinite(losses).all():
            raise NonFiniteLossError(f"loss is {losses.sum().item()}")
        return losses

    def _loss_step(self, batch: DenoisingBatch) -> EngineStep:
        losses = self._losses(batch)
        if self.spec.trainable:
            weights = self.method.weights()
            objective = self.method(losses)
        else:
            weights = self.method.weights(losses.detach())
            objective = (weights.to(losses) * losses).sum()
        self._awaiting_update = self.spec.needs_update
        return EngineStep(objective, _stats(losses.detach(), weights))

    def _reuse_step(self, batch: DenoisingBatch, scale: float) -> EngineStep:
        losses = self._losses(batch)
        alpha = self.method.alpha
        params = trainable(self.model)
        grads = torch.autograd.grad(
            (alpha.to(losses) * losses).sum() * scale, params, allow_unused=True
        )
        update = torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).reshape(-1).float() / scale
                for g, p in zip(grads, params, strict=True)
            ]
        )
        if self.sync is not None:
            self.sync(update)
        return self._finish(update, losses.detach(), alpha, scale)

    def _gradient_step(self, batch: DenoisingBatch, scale: float) -> EngineStep:
        if self.path == "fast" and self.self_check and not self.checked:
            self._check_against_reference(batch)
        loss = self.loss if scale == 1.0 else (lambda o, b: self.loss(o, b) * scale)
        result = cluster_gradients(
            self.model,
            batch,
            self.path,
            out=self._buffer(),
            forward=self.forward,
            loss=loss,
            audit=not self.checked,
        )
        self.checked = True
        losses, grads = result.losses / scale, result.grads
        if scale != 1.0:
            grads.div_(scale)
        if self.sync is not None:  # the global g_i (k all-reduces in buckets), then one Gramian
            self.sync(grads)
            self.sync(losses)
        gramian = result.gramian()  # G_ii = ||g_i||^2: non-finite iff g_i is (or overflows)
        if not (torch.isfinite(losses).all() and torch.isfinite(gramian).all()):
            if scale != 1.0:  # fp16 overflow: a non-finite update, which the GradScaler skips
                nan = torch.full((self.k,), float("nan"))
                return self._finish(grads.sum(0), losses, nan, scale)
            if not torch.isfinite(losses).all():
                raise NonFiniteLossError(f"loss is {losses.sum().item()}")
            bad = [i for i in range(self.k) if not torch.isfinite(gramian[i, i])]
            raise NonFiniteLossError(f"non-finite gradient of clusters {bad} with a finite loss")
        if self.spec.name == "pcgrad":
            weights = self.method(gramian, generator=self.generator)
        else:
            weights = self.method(gramian)
        return self._finish(weights.to(grads) @ grads, losses, weights, scale)

    def _finish(self, update: Tensor, losses: Tensor, weights: Tensor, scale: float) -> EngineStep:
        if self.spec.name == "nash" and self.nash_max_norm > 0:
            norm = update.norm()
            if torch.isfinite(norm) and norm > self.nash_max_norm:
                update = update * (self.nash_max_norm / norm)
        return EngineStep(_surrogate(trainable(self.model), update), _stats(losses, weights))

    def _check_against_reference(self, batch: DenoisingBatch) -> None:
        """Raise FastPathMismatchError unless fast == reference on this batch (eval mode)."""
        modes = {m: m.training for m in self.model.modules()}
        device = next(self.model.parameters()).device
        devices = [device.index or 0] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.autocast(device.type, enabled=False):
                self.model.eval()
                args = {"forward": self.forward, "loss": self.loss}
                fast = cluster_gradients(self.model, batch, "fast", **args).grads
                reference = cluster_gradients(self.model, batch, "reference", **args).grads
        finally:
            for module, mode in modes.items():
                module.train(mode)
        scale = reference.norm(dim=1).clamp_min(1e-30)
        error = (fast - reference).norm(dim=1) / scale
        precision = next(self.model.parameters()).dtype  # bf16 weights round far more than fp32
        tolerance = max(self.check_tolerance, 10 * torch.finfo(precision).eps)
        if float(error.max()) <= tolerance:
            return
        worst = int(error.argmax())
        names, start, errors = [], 0, []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            cols = slice(start, start + p.numel())
            start += p.numel()
            diff = float((fast[worst, cols] - reference[worst, cols]).norm())
            errors.append((diff / float(scale[worst]), name))
        names = ", ".join(f"{n} ({e:.2g})" for e, n in sorted(errors, reverse=True)[:3])
        raise FastPathMismatchError(
            f"gradient_path='fast' differs from the reference path on this model: relative error "
            f"{float(error.max()):.3g} > {tolerance:g} for cluster {worst}, most in "
            f"{names}. Something in the model couples samples or hides a parameter's use from the "
            "per-layer capture; use gradient_path='vmap' or 'reference'. (self_check=False "
            "skips this comparison; do that only for a model checked before.)"
        )

    def _buffer(self) -> Tensor:
        """The (k, P) per-cluster gradient buffer (float32 or wider), allocated once."""
        if self._grads is None:
            params = trainable(self.model)
            dtype = torch.promote_types(params[0].dtype, torch.float32)
            size = (self.k, sum(p.numel() for p in params))
            self._grads = torch.empty(size, dtype=dtype, device=params[0].device)
        return self._grads

    # --- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "calls": self.calls,
            "generator": self.generator.get_state(),
        }
        if isinstance(self.method, nn.Module):
            state["method"] = self.method.state_dict()
        for name in ("alpha", "history", "scaled_alpha"):  # Nash warm start, DWA loss history
            if hasattr(self.method, name):
                state[name] = getattr(self.method, name)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = state["calls"]
        self.generator.set_state(state["generator"])
        if "method" in state:
            self.method.load_state_dict(state["method"])
        for name in ("alpha", "history", "scaled_alpha"):
            if name in state:
                setattr(self.method, name, state[name])


def _surrogate(params: list[nn.Parameter], update: Tensor) -> Tensor:
    """A scalar whose gradient with respect to `params` is `update` (flat), in update's dtype."""
    device = update.device.type
    with (
        torch.autocast(device, enabled=False)
        if device in ("cpu", "cuda")
        else contextlib.nullcontext()
    ):
        flat = torch.cat([p.reshape(-1).to(update.dtype) for p in params])
        return flat @ update.detach()


def _stats(losses: Tensor, weights: Tensor) -> StepStats:
    return StepStats(float(losses.sum()), losses.tolist(), weights.detach().float().tolist())
