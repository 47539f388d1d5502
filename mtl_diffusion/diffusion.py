"""Noise schedules, the forward process, prediction-target conversions and per-sample losses.

Conventions: T discrete steps, t = 0 the least noise, t = T - 1 the most. ``alphas_cumprod[t]``
is the cumulative signal fraction alpha_bar_t of x_t = sqrt(alpha_bar_t) x0 +
sqrt(1 - alpha_bar_t) eps; SNR(t) = alpha_bar_t / (1 - alpha_bar_t) decreases in t.
Index t here is step t + 1 of the DDPM paper (whose steps run 1..T).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "x0", "v")

Model = Callable[[Tensor, Tensor], Tensor]


def model_device(model: Model) -> torch.device:
    """Where a denoiser computes: its first parameter's (or buffer's) device; the CPU for a
    plain callable or a module without tensors."""
    if isinstance(model, nn.Module):
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            return tensor.device
    return torch.device("cpu")


def check_prediction(prediction: str) -> None:
    """Raise ValueError unless ``prediction`` is one of PREDICTIONS."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


@dataclass(frozen=True, eq=False)
class Schedule:
    """A discrete noise schedule: ``betas`` and ``alphas_cumprod``, float64 of shape (T,)."""

    betas: Tensor
    alphas_cumprod: Tensor

    def __post_init__(self) -> None:
        for name in ("betas", "alphas_cumprod"):
            value = getattr(self, name)
            if value.dtype != torch.float64 or value.ndim != 1 or len(value) < 2:
                raise ValueError(f"{name} must be a float64 tensor of shape (T,) with T >= 2")
        if self.betas.shape != self.alphas_cumprod.shape:
            raise ValueError("betas and alphas_cumprod must have the same shape (T,)")
        if not bool(((self.betas > 0) & (self.betas < 1)).all()):
            raise ValueError("betas must lie strictly between 0 and 1")

    @property
    def T(self) -> int:
        """Number of discrete timesteps."""
        return len(self.betas)

    def to(self, device: torch.device | str) -> Schedule:
        """The same schedule with its tensors on ``device``."""
        return Schedule(self.betas.to(device), self.alphas_cumprod.to(device))

    def snr(self, t: Tensor | None = None) -> Tensor:
        """SNR(t) = alpha_bar / (1 - alpha_bar) in float64; all T values when ``t`` is None."""
        ab = self.alphas_cumprod if t is None else self.alphas_cumprod[self._index(t)]
        return ab / (1.0 - ab)

    def log_snr(self, t: Tensor | None = None) -> Tensor:
        """log SNR(t) in float64, computed without forming the ratio."""
        ab = self.alphas_cumprod if t is None else self.alphas_cumprod[self._index(t)]
        return torch.log(ab) - torch.log1p(-ab)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, in x0's dtype."""
        signal, sigma = self._coefs(t, x0)
        return signal * x0 + sigma * noise

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """The noise that takes ``x0`` to ``x_t`` at step t."""
        signal, sigma = self._coefs(t, x_t)
        return (x_t - signal * x0) / sigma

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """The clean data that ``eps`` takes to ``x_t`` at step t."""
        signal, sigma = self._coefs(t, x_t)
        return (x_t - sigma * eps) / signal

    def target(self, x0: Tensor, noise: Tensor, t: Tensor, prediction: str) -> Tensor:
        """Regression target: noise ("eps"), x0 ("x0") or v = sqrt(ab) eps - sqrt(1-ab) x0."""
        check_prediction(prediction)
        if prediction == "eps":
            return noise
        if prediction == "x0":
            return x0
        signal, sigma = self._coefs(t, x0)
        return signal * noise - sigma * x0

    def model_output_to_eps_x0(
        self, output: Tensor, x_t: Tensor, t: Tensor, prediction: str
    ) -> tuple[Tensor, Tensor]:
        """Turn a model output of the given prediction type into (eps, x0) estimates."""
        check_prediction(prediction)
        if prediction == "eps":
            return output, self.x0_from_eps(x_t, t, output)
        if prediction == "x0":
            return self.eps_from_x0(x_t, t, output), output
        signal, sigma = self._coefs(t, x_t)
        return sigma * x_t + signal * output, signal * x_t - sigma * output

    def _index(self, t: Tensor) -> Tensor:
        """Validate integer timesteps in [0, T) and return them on the schedule's device."""
        t = torch.as_tensor(t)
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(f"t must hold integer timesteps, got dtype {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.T):
            raise ValueError(f"t must lie in [0, {self.T - 1}]")
        return t.to(self.betas.device)

    def _coefs(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """sqrt(ab_t) and sqrt(1 - ab_t) shaped (B, 1, ..., 1) to broadcast against ``like``."""
        t = torch.as_tensor(t)
        if t.shape != like.shape[:1]:
            raise ValueError(f"t must have shape ({like.shape[0]},), got {tuple(t.shape)}")
        ab = self.alphas_cumprod[self._index(t)]
        shape = (-1,) + (1,) * (like.ndim - 1)
        signal = ab.sqrt().to(like.device, like.dtype).view(shape)
        sigma = (1.0 - ab).sqrt().to(like.device, like.dtype).view(shape)
        return signal, sigma


def make_schedule(name: str, T: int = 1000) -> Schedule:
    """A named schedule of T steps: "linear" (DDPM, scaled with T) or "cosine" (Nichol-Dhariwal)."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule name must be one of {SCHEDULES}, got {name!r}")
    if T < 2:
        raise ValueError(f"T must be an integer >= 2, got {T}")
    if name == "linear":
        if T <= 20:
            raise ValueError(f"the linear schedule needs T > 20 (its last beta is 20 / T), got {T}")
        scale = 1000 / T
        betas = torch.linspace(1e-4 * scale, 0.02 * scale, T, dtype=torch.float64)
    else:
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos((steps / T + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    return Schedule(betas, torch.cumprod(1.0 - betas, dim=0))


def per_sample_loss(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    prediction: str = "eps",
) -> Tensor:
    """Unweighted MSE of ``model(x_t, t)`` against the prediction target, one per sample: (B,)."""
    check_prediction(prediction)
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
    x_t = schedule.q_sample(x0, t, noise)
    output = model(x_t, t)
    if output.shape != x0.shape:
        raise ValueError(
            f"model output must have x0's shape {tuple(x0.shape)}, got {tuple(output.shape)}"
        )
    error = (output - schedule.target(x0, noise, t, prediction)) ** 2
    return error.flatten(1).mean(dim=1)
