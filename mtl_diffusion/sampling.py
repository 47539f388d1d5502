"""Samplers (DDPM ancestral, DDIM) over a ``denoise(x_t, t)`` callable, and hybrid routing by t."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from mtl_diffusion.diffusion import Model, Schedule, check_prediction
from mtl_diffusion.progress import progress


def _estimate(
    denoise: Model,
    schedule: Schedule,
    x: Tensor,
    step: int,
    prediction: str,
    clip_x0: bool,
) -> tuple[Tensor, Tensor]:
    """(eps, x0) estimated at step ``step``; with ``clip_x0`` x0 is clamped and eps recomputed."""
    t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
    eps, x0 = schedule.model_output_to_eps_x0(denoise(x, t), x, t, prediction)
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
        eps = schedule.eps_from_x0(x, t, x0)
    return eps, x0


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator``."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _steps(steps: Sequence[int], desc: str, progress_bar: bool) -> Iterable[int]:
    """The timesteps, wrapped in a progress bar when asked for."""
    return progress(steps, desc=desc, total=len(steps)) if progress_bar else steps


@torch.no_grad()
def ddpm_sample(
    denoise: Model,
    schedule: Schedule,
    noise: Tensor,
    *,
    prediction: str = "eps",
    generator: torch.Generator | None = None,
    clip_x0: bool = True,
    progress_bar: bool = True,
) -> Tensor:
    """Ancestral sampling over all T steps from x_T = ``noise``, posterior variance beta_tilde.

    ``generator`` drives the per-step noise (it must live on ``noise``'s device).
    """
    check_prediction(prediction)
    schedule = schedule.to(noise.device)
    betas = schedule.betas.tolist()
    ab = schedule.alphas_cumprod.tolist()
    x = noise
    for step in _steps(range(schedule.T - 1, -1, -1), "DDPM", progress_bar):
        _, x0 = _estimate(denoise, schedule, x, step, prediction, clip_x0)
        if step > 0:
            ab_t, ab_prev, beta = ab[step], ab[step - 1], betas[step]
            mean = (ab_prev**0.5 * beta * x0 + (1 - beta) ** 0.5 * (1 - ab_prev) * x) / (1 - ab_t)
            std = (beta * (1 - ab_prev) / (1 - ab_t)) ** 0.5
            x = mean + std * _randn_like(x, generator)
    return x0


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` evenly spaced timesteps from T - 1 down to 0 (just T - 1 when steps == 1)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must lie in [1, {T}], got {steps}")
    return torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long().tolist()


@torch.no_grad()
def ddim_sample(
    denoise: Model,
    schedule: Schedule,
    noise: Tensor,
    *,
    steps: int = 50,
    eta: float = 0.0,
    prediction: str = "eps",
    generator: torch.Generator | None = None,
    clip_x0: bool = True,
    progress_bar: bool = True,
) -> Tensor:
    """DDIM from x_T = ``noise`` over ``ddim_timesteps(T, steps)``; eta = 0 is deterministic.

    The last step jumps from the smallest timestep to the clean x0 estimate. eta = 1 with
    steps = T is DDPM ancestral sampling.
    """
    check_prediction(prediction)
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    schedule = schedule.to(noise.device)
    ab = schedule.alphas_cumprod.tolist()
    sequence = ddim_timesteps(schedule.T, steps)
    x = noise
    for i, step in enumerate(_steps(sequence, "DDIM", progress_bar)):
        eps, x0 = _estimate(denoise, schedule, x, step, prediction, clip_x0)
        if i + 1 < len(sequence):
            ab_t, ab_prev = ab[step], ab[sequence[i + 1]]
            sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)) ** 0.5
            x = ab_prev**0.5 * x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * eps
            if sigma > 0:
                x = x + sigma * _randn_like(x, generator)
    return x0


def piecewise_denoiser(
    intervals: Sequence[tuple[int, int]],
    denoisers: Sequence[Model],
    *,
    T: int | None = None,
) -> Model:
    """A denoiser that sends each sample to the denoiser whose inclusive interval holds its t.

    ``intervals`` must be contiguous and in order from 0 (to T - 1 when ``T`` is given).
    """
    if len(intervals) == 0 or len(intervals) != len(denoisers):
        raise ValueError("intervals and denoisers must be non-empty and of the same length")
    intervals = [(int(start), int(end)) for start, end in intervals]
    denoisers = list(denoisers)
    expected_start = 0
    for start, end in intervals:
        if start != expected_start or end < start:
            raise ValueError(
                f"intervals must be contiguous inclusive (start, end) pairs covering 0..T-1 in "
                f"order: expected one starting at {expected_start}, got {(start, end)}"
            )
        expected_start = end + 1
    last = intervals[-1][1]
    if T is not None and last != T - 1:
        raise ValueError(f"intervals must end at T - 1 = {T - 1}, got {last}")

    def denoise(x_t: Tensor, t: Tensor) -> Tensor:
        if int(t.min()) < 0 or int(t.max()) > last:
            raise ValueError(f"t must lie in [0, {last}] (the intervals' span)")
        output: Tensor | None = None
        for (start, end), model in zip(intervals, denoisers, strict=True):
            mask = (t >= start) & (t <= end)
            if bool(mask.all()):
                return model(x_t, t)
            if not bool(mask.any()):
                continue
            part = model(x_t[mask], t[mask])
            if output is None:
                output = part.new_empty((x_t.shape[0],) + part.shape[1:])
            output[mask] = part
        assert output is not None
        return output

    return denoise
