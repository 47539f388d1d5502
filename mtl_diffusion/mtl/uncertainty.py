"""Uncertainty weighting (Kendall et al. 2018) as used by ANT: learned log-variances per cluster."""

from __future__ import annotations

import torch
from torch import nn


class UncertaintyWeighting(nn.Module):
    """loss = sum_i 0.5 * (exp(-s_i) * L_i + s_i), s a learnable k-vector initialised at 0.

    At the optimum over s, exp(-s_i) = 1 / L_i: the weights 0.5 exp(-s_i) approach 1 / (2 L_i).
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.s = nn.Parameter(torch.zeros(k))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        """The weighted total of the k cluster losses (a scalar)."""
        if losses.shape != self.s.shape:
            raise ValueError(
                f"losses must have shape {tuple(self.s.shape)}, got {tuple(losses.shape)}"
            )
        s = self.s.to(losses.dtype)
        return 0.5 * (torch.exp(-s) * losses + s).sum()

    def weights(self) -> torch.Tensor:
        """The current multipliers 0.5 * exp(-s) of the losses (detached)."""
        return 0.5 * torch.exp(-self.s.detach())

    def param_group(self, lr: float = 0.025) -> dict:
        """The optimizer parameter group of s: its own lr and no weight decay, as in ANT."""
        return {"params": [self.s], "lr": lr, "weight_decay": 0.0}
