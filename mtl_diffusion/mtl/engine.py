"""The per-cluster MTL engine: from a stratified batch to parameter gradients, for any method.

Loss-based methods (vanilla, uw, famo, dwa) run ONE backward of their combined loss
sum_i w_i L_i (uncertainty weighting: its own objective). Gradient methods (pcgrad, nash, mgda,
imtlg, cagrad) get the k per-cluster gradients g_i (see cluster_gradients), the Gramian
G = g g^T, weights w = method(G), and set p.grad = sum_i w_i g_i. NashMTL re-solves every
`nash_every` calls; in between it reuses alpha through one backward of sum_i alpha_i L_i (the
same update at a plain backward's cost) and its update is clipped at `nash_max_norm`.

L_i is the cluster loss of cluster_gradients (sum_i L_i = batch mean), so vanilla is exactly the
plain mean-loss step. `weights` recorded per step are the multipliers of L_i in the update
direction sum_i w_i grad L_i (uncertainty weighting: 0.5 exp(-s_i); Nash: alpha).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtl_diffusion.config import Config
from mtl_diffusion.mtl.cluster_gradients import (
    PATHS,
    DenoisingBatch,
    check_fast_path,
    cluster_gradients,
    cluster_losses,
    sample_losses,
    trainable,
)
from mtl_diffusion.mtl.registry import get_method


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


@dataclass
class StepStats:
    """What one backward produced: batch-mean loss, cluster losses L_i and their weights w_i."""

    loss: float
    cluster_losses: list[float]
    weights: list[float]


class MTLEngine:
    """Sets the gradients of `model` for one batch under the MTL method `method` over k clusters."""

    def __init__(
        self,
        model: nn.Module,
        method: str,
        k: int,
        *,
        path: str = "fast",
        seed: int = 0,
        uw_lr: float = 0.025,
        nash_every: int = 1,
        nash_max_norm: float = 0.0,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.spec = get_method(method)
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if nash_every < 1:
            raise ValueError(f"nash_every must be >= 1, got {nash_every}")
        if nash_max_norm < 0:
            raise ValueError(f"nash_max_norm must be >= 0 (0 disables), got {nash_max_norm}")
        if self.spec.kind == "gradient" and path == "fast":
            check_fast_path(model)
        self.model, self.k, self.path = model, k, path
        self.uw_lr, self.nash_every, self.nash_max_norm = uw_lr, nash_every, nash_max_norm
        self.method = self.spec.build(k, **(options or {}))
        if isinstance(self.method, nn.Module):  # UW's and FAMO's parameters live with the model's
            self.method.to(next(model.parameters()).device)
        self.generator = torch.Generator().manual_seed(seed)  # PCGrad's random orders
        self.calls = 0
        self._grads: Tensor | None = None  # per-cluster gradients, reused across steps

    @classmethod
    def from_config(cls, config: Config, model: nn.Module, k: int) -> MTLEngine:
        """The engine config.mtl describes, over k clusters."""
        m = config.mtl
        options = {"c": m.cagrad_c} if m.method == "cagrad" else {}
        return cls(
            model,
            m.method,
            k,
            path=m.gradient_path,
            seed=config.seed,
            uw_lr=m.uw_lr,
            nash_every=m.nash_every,
            nash_max_norm=m.nash_max_norm,
            options=options,
        )

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups of the method's own parameters (uncertainty weighting)."""
        return [self.method.param_group(self.uw_lr)] if self.spec.trainable else []

    # --- one step -----------------------------------------------------------------------------
    def backward(self, batch: DenoisingBatch) -> StepStats:
        """Set p.grad of every trainable parameter (and the method's own) for this batch."""
        if batch.num_clusters != self.k:
            raise ValueError(f"batch has {batch.num_clusters} clusters, the engine {self.k}")
        self.calls += 1
        if self.spec.kind == "gradient" and not self._reusing():
            stats = self._gradient_step(batch)
        else:
            stats = self._loss_step(batch)
        if self.spec.name == "nash" and self.nash_max_norm > 0:
            nn.utils.clip_grad_norm_(trainable(self.model), self.nash_max_norm)
        return stats

    def after_step(self, batch: DenoisingBatch) -> None:
        """After the optimizer step: FAMO re-measures the losses on the same batch."""
        if self.spec.needs_update:
            with torch.no_grad():
                output = self.model(batch.x_t, batch.t)
            self.method.update(cluster_losses(sample_losses(output, batch), batch))

    def _reusing(self) -> bool:
        """NashMTL between re-solves: reuse its last alpha."""
        due = (self.calls - 1) % self.nash_every == 0
        return self.spec.name == "nash" and self.method.alpha is not None and not due

    def _loss_step(self, batch: DenoisingBatch) -> StepStats:
        losses = cluster_losses(sample_losses(self.model(batch.x_t, batch.t), batch), batch)
        _check_finite(losses)
        if self.spec.trainable:
            weights = self.method.weights()
            objective = self.method(losses)
        else:
            weights = self.method.alpha if self._reusing() else self.method.weights(losses.detach())
            objective = (weights.to(losses) * losses).sum()
        self._zero_grad()
        objective.backward()
        return _stats(losses.detach(), weights)

    def _gradient_step(self, batch: DenoisingBatch) -> StepStats:
        result = cluster_gradients(self.model, batch, self.path, out=self._buffer())
        _check_finite(result.losses)
        gramian = result.gramian()
        if self.spec.name == "pcgrad":
            weights = self.method(gramian, generator=self.generator)
        else:
            weights = self.method(gramian)
        for p, update in zip(trainable(self.model), result.combine(weights), strict=True):
            p.grad = update
        return _stats(result.losses, weights)

    def _buffer(self) -> Tensor:
        """The (k, P) per-cluster gradient buffer, allocated once."""
        if self._grads is None:
            params = trainable(self.model)
            self._grads = params[0].new_empty(self.k, sum(p.numel() for p in params))
        return self._grads

    def _zero_grad(self) -> None:
        for p in trainable(self.model):
            p.grad = None

    # --- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "calls": self.calls,
            "generator": self.generator.get_state(),
        }
        if isinstance(self.method, nn.Module):
            state["method"] = self.method.state_dict()
        for name in ("alpha", "history"):  # NashMTL warm start, DWA loss history
            if hasattr(self.method, name):
                state[name] = getattr(self.method, name)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = state["calls"]
        self.generator.set_state(state["generator"])
        if "method" in state:
            self.method.load_state_dict(state["method"])
        for name in ("alpha", "history"):
            if name in state:
                setattr(self.method, name, state[name])


def _check_finite(losses: Tensor) -> None:
    if not torch.isfinite(losses).all():
        raise NonFiniteLossError(f"loss is {losses.sum().item()}")


def _stats(losses: Tensor, weights: Tensor) -> StepStats:
    return StepStats(float(losses.sum()), losses.tolist(), weights.detach().float().tolist())
