"""Exponential moving average of model weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(decay: float, step: int, warmup: bool = True) -> float:
    """The decay of the update after `step` completed steps: min(decay, (1 + step) / (10 + step))
    with warm-up (so early averages are not dominated by the initial weights), else `decay`."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of `model` to hold the averaged weights."""
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers are copied."""
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param.detach(), 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)
