"""Dynamic Weight Average (Liu et al. 2019) and equal weighting: loss-based, no gradients needed."""

from __future__ import annotations

import torch


class EqualWeighting:
    """Vanilla training: w_i = 1, so sum_i w_i L_i is the plain total of the cluster losses."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """Ones of shape (k,)."""
        losses = torch.as_tensor(losses)
        if losses.shape != (self.k,):
            raise ValueError(f"losses must have shape ({self.k},), got {tuple(losses.shape)}")
        return torch.ones_like(losses.detach())


class DWA(EqualWeighting):
    """w = k softmax(r / temperature), r_i = L_i(t-1) / L_i(t-2), from the last two recorded steps.

    Call weights(losses) once per step with that step's losses: it returns the weights from the
    history (ones for the first two steps) and then records the losses.
    """

    def __init__(self, k: int, temperature: float = 2.0) -> None:
        super().__init__(k)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.history: list[torch.Tensor] = []

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """The weights for this step's losses (from the previous two steps), then record them."""
        losses = torch.as_tensor(losses).detach()
        w = super().weights(losses)
        if not (torch.isfinite(losses).all() and (losses > 0).all()):
            raise ValueError("losses must be finite and > 0 (DWA divides by them)")
        if len(self.history) == 2:
            ratio = self.history[1] / self.history[0]
            w = self.k * torch.softmax(ratio / self.temperature, dim=0).to(w)
        self.history = (self.history + [losses.clone()])[-2:]
        return w
