"""Denoising Task Routing (DTR): per-timestep channel masks and the router that applies them.

Each timestep t is a task; task t activates a subset of a layer's channels. DTR uses a sliding
window of ``int(beta * C)`` contiguous channels whose start moves as ``(t / (T - 1)) ** alpha``;
random routing (R-TR, a control that hurts in the paper) draws a fixed random subset per task.
The mask is a buffer derived from the spec: routing adds no parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

ROUTING_KINDS = ("dtr", "random", "none")


def _check_int(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _active_channels(channels: int, beta: float) -> int:
    """Validate (channels, beta) and return the number of active channels int(beta * C)."""
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    _check_int(channels, "channels", 1)
    active = int(beta * channels)
    if active < 1:
        raise ValueError(
            f"beta * channels must be >= 1 active channel, got beta={beta}, channels={channels}"
        )
    return active


def dtr_mask(num_tasks: int, channels: int, beta: float = 0.8, alpha: float = 4.0) -> Tensor:
    """DTR mask, bool (num_tasks, channels).

    Row t is a window of ``int(beta * channels)`` active channels starting at
    ``round((t / (num_tasks - 1)) ** alpha * (channels - int(beta * channels)))``.
    """
    _check_int(num_tasks, "num_tasks", 2)
    if not 0 < alpha < float("inf"):
        raise ValueError(f"alpha must be > 0, got {alpha}")
    active = _active_channels(channels, beta)
    # Python floats and round() (half to even), exactly the formula above.
    starts = [round((t / (num_tasks - 1)) ** alpha * (channels - active)) for t in range(num_tasks)]
    start = torch.tensor(starts)[:, None]
    idx = torch.arange(channels)
    return (idx >= start) & (idx < start + active)


def random_mask(num_tasks: int, channels: int, beta: float = 0.8, seed: int = 0) -> Tensor:
    """Random routing (R-TR), bool (num_tasks, channels): per task a random subset of
    ``int(beta * channels)`` channels, fixed by ``seed``."""
    _check_int(num_tasks, "num_tasks", 1)
    _check_int(seed, "seed", 0)
    active = _active_channels(channels, beta)
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.rand(num_tasks, channels, generator=gen).argsort(dim=1)[:, :active]
    mask = torch.zeros(num_tasks, channels, dtype=torch.bool)
    return mask.scatter(1, chosen, True)


@dataclass(frozen=True)
class RoutingSpec:
    """How a model routes channels per timestep: kind "dtr", "random" or "none" (off)."""

    kind: str = "dtr"
    beta: float = 0.8
    alpha: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ROUTING_KINDS:
            raise ValueError(f"kind must be one of {ROUTING_KINDS}, got {self.kind!r}")
        if not 0.0 < self.beta <= 1.0:
            raise ValueError(f"beta must be in (0, 1], got {self.beta}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")

    def mask(self, num_tasks: int, channels: int) -> Tensor:
        """The bool (num_tasks, channels) mask this spec describes."""
        if self.kind == "dtr":
            return dtr_mask(num_tasks, channels, self.beta, self.alpha)
        if self.kind == "random":
            return random_mask(num_tasks, channels, self.beta, self.seed)
        raise ValueError("kind 'none' has no mask; kind must be one of ('dtr', 'random')")


class ChannelRouter(nn.Module):
    """Multiplies activations by the mask row of each sample's timestep.

    ``channel_dim`` is 1 for (B, C, ...) feature maps and -1 for (B, ..., C) tokens. The mask is
    stored as a bool buffer (not saved in the state dict: it is derived from the spec) and cast
    to the activations' dtype, so routing never changes dtypes under mixed precision.
    """

    def __init__(self, num_tasks: int, channels: int, spec: RoutingSpec, channel_dim: int = 1):
        super().__init__()
        if channel_dim not in (1, -1):
            raise ValueError(f"channel_dim must be one of (1, -1), got {channel_dim}")
        self.channel_dim = channel_dim
        self.register_buffer("mask", spec.mask(num_tasks, channels), persistent=False)

    def forward(self, h: Tensor, t: Tensor) -> Tensor:
        m = self.mask[t].to(h.dtype)  # (B, C): one gather, no loop over the batch
        extra = (1,) * (h.dim() - 2)
        shape = (m.shape[0], *extra, m.shape[1]) if self.channel_dim == -1 else (*m.shape, *extra)
        return h * m.reshape(shape)


def make_router(
    spec: RoutingSpec | None, num_tasks: int, channels: int, channel_dim: int = 1
) -> ChannelRouter | None:
    """A router for one layer, or None when routing is off (spec None or kind "none")."""
    if spec is None or spec.kind == "none":
        return None
    return ChannelRouter(num_tasks, channels, spec, channel_dim)


def route(router: ChannelRouter | None, h: Tensor, t: Tensor) -> Tensor:
    """Apply ``router`` if there is one, else return ``h`` unchanged."""
    return h if router is None else router(h, t)
