"""FAMO (Liu et al. 2023, "FAMO: Fast Adaptive Multitask Optimization").

Weights z = softmax(xi) over tasks; the update direction is d = c sum_i (z_i / L_i) grad L_i with
c = 1 / sum_i (z_i / L_i), the gradient of c sum_i z_i log L_i, so one backward of
sum_i w_i L_i with w_i = c z_i / L_i (w lies on the simplex). After the parameter step, the
losses are measured again on the same batch and xi takes a step of gradient descent on the
observed decrease of log losses delta_i = log L_i(before) - log L_i(after): its gradient is
J_softmax(xi)^T delta, plus gamma * xi. optimizer="adam" is the paper's practical version
(Adam, lr 0.025, weight decay gamma = 1e-3); optimizer="sgd" is its Algorithm 1,
xi <- xi - lr (J^T delta + gamma xi).
"""

from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = ("adam", "sgd")


class FAMO(nn.Module):
    """Loss-based FAMO weighting with state; call weights() before the step, update() after."""

    def __init__(
        self,
        k: int,
        lr: float = 0.025,
        gamma: float = 0.001,
        min_loss: float = 1e-8,
        optimizer: str = "adam",
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not min_loss > 0:
            raise ValueError(f"min_loss must be > 0, got {min_loss}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        self.min_loss = min_loss
        self.xi = nn.Parameter(torch.zeros(k))
        cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
        self._optimizer = cls([self.xi], lr=lr, weight_decay=gamma)
        self._log_before: torch.Tensor | None = None

    def _log_losses(self, losses: torch.Tensor) -> torch.Tensor:
        """log max(L_i, min_loss); raises ValueError on a wrong shape, NaN or negative loss."""
        losses = torch.as_tensor(losses).detach().to(self.xi)
        if losses.shape != self.xi.shape:
            raise ValueError(
                f"losses must have shape {tuple(self.xi.shape)}, got {tuple(losses.shape)}"
            )
        if not torch.isfinite(losses).all() or (losses < 0).any():
            raise ValueError("losses must be finite and >= 0 (FAMO takes their logarithm)")
        return losses.clamp(min=self.min_loss).log()

    def get_extra_state(self) -> dict:
        """The inner optimizer's state, saved by state_dict() so that a resumed run continues."""
        return {"optimizer": self._optimizer.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self._optimizer.load_state_dict(state["optimizer"])

    def task_weights(self) -> torch.Tensor:
        """z = softmax(xi), the paper's task weights."""
        return torch.softmax(self.xi.detach(), dim=0)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """w_i = c z_i / L_i (detached, sums to 1) for loss = sum_i w_i L_i; records the losses."""
        log_losses = self._log_losses(losses)
        self._log_before = log_losses
        w = self.task_weights() * torch.exp(-log_losses)
        ref = torch.as_tensor(losses)
        return (w / w.sum()).to(ref.device, ref.dtype)

    def update(self, new_losses: torch.Tensor) -> None:
        """One step on xi from the losses measured after the parameter step (same batch)."""
        if self._log_before is None:
            raise RuntimeError("call weights(losses) before update(new_losses)")
        delta = self._log_before - self._log_losses(new_losses)
        z = self.task_weights()
        self._optimizer.zero_grad()
        self.xi.grad = z * delta - z * (z @ delta)  # J^T delta, J = diag(z) - z z^T
        self._optimizer.step()
        self._log_before = None
