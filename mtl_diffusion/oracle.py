"""The exact denoiser of a Gaussian mixture, and a model's excess risk against it.

For data x0 from a mixture of isotropic Gaussians, sum_k w_k N(m_k, s_k^2 I), the noisy point
x_t = a x0 + sigma eps (a = sqrt(alpha_bar_t), sigma = sqrt(1 - alpha_bar_t)) given component k
is N(a m_k, v_k I) with v_k = a^2 s_k^2 + sigma^2, and x0 given (x_t, k) is Gaussian with mean
m_k + (a s_k^2 / v_k) (x_t - a m_k). Hence the posterior mean in closed form:

    E[x0 | x_t] = sum_k r_k(x_t) (m_k + (a s_k^2 / v_k) (x_t - a m_k)),
    r_k(x_t) proportional to w_k N(x_t; a m_k, v_k I)   (the posterior responsibilities),

and E[eps | x_t] = (x_t - a E[x0 | x_t]) / sigma, E[v | x_t] = a E[eps | x_t] - sigma E[x0 | x_t].
Under squared error the posterior mean is the best possible denoiser for every t, so
``MSE(model) - MSE(optimum)`` on the same (x0, t, noise) draws is the model's *excess risk*:
its expectation is E || model(x_t, t) - optimum(x_t, t) ||^2 (the cross term has mean zero),
which :func:`excess_risk` also returns (``distance``), estimated from the same draws without
the irreducible noise of the targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mtl_diffusion.diffusion import Model, Schedule, check_prediction, model_device


class MixtureDenoiser:
    """``denoise(x_t, t)``: the exact posterior mean of the `prediction` target for data from
    the mixture sum_k weights[k] N(means[k], stds[k]^2 I) under `schedule` (float64 inside,
    returned in x_t's dtype and device). `stds` is one value for every component or one per
    component (0 allowed: a Dirac); `weights` default to equal."""

    def __init__(
        self,
        schedule: Schedule,
        means: Tensor,
        stds: float | Sequence[float] | Tensor,
        weights: Tensor | None = None,
        prediction: str = "eps",
    ) -> None:
        check_prediction(prediction)
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"means must be (K, d), got shape {tuple(means.shape)}")
        k = means.shape[0]
        stds = torch.as_tensor(stds, dtype=torch.float64).expand(k).clone()
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else weights
        w = torch.as_tensor(w, dtype=torch.float64)
        if (stds < 0).any():
            raise ValueError("stds must be non-negative")
        if w.shape != (k,) or (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-9:
            raise ValueError(f"weights must be K = {k} non-negative values summing to 1")
        self.schedule, self.prediction = schedule, prediction
        self.means, self.variances, self.log_weights = means, stds**2, torch.log(w)

    def posterior_x0(self, x_t: Tensor, t: Tensor) -> Tensor:
        """E[x0 | x_t] (float64), x_t (B, d), t (B,) long."""
        if x_t.ndim != 2 or x_t.shape[1] != self.means.shape[1] or t.shape != x_t.shape[:1]:
            raise ValueError(
                f"x_t must be (B, {self.means.shape[1]}) and t (B,), got {tuple(x_t.shape)} and "
                f"{tuple(t.shape)}"
            )
        x = x_t.to("cpu", torch.float64)
        ab = self.schedule.alphas_cumprod.to("cpu")[t.to("cpu")][:, None]  # (B, 1)
        a = ab.sqrt()
        v = ab * self.variances + (1.0 - ab)  # (B, K): variance of x_t given component k
        centred = x[:, None, :] - a[:, :, None] * self.means  # (B, K, d)
        d = self.means.shape[1]
        log_r = self.log_weights - 0.5 * (centred**2).sum(-1) / v - 0.5 * d * torch.log(v)
        r = torch.softmax(log_r, dim=1)  # (B, K) posterior responsibilities
        shrink = (a * self.variances / v)[:, :, None]  # (B, K, 1)
        return (r[:, :, None] * (self.means + shrink * centred)).sum(1)

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        x0 = self.posterior_x0(x_t, t)
        ab = self.schedule.alphas_cumprod.to("cpu")[t.to("cpu")][:, None]
        a, sigma = ab.sqrt(), (1.0 - ab).sqrt()
        eps = (x_t.to("cpu", torch.float64) - a * x0) / sigma
        out = {"eps": eps, "x0": x0, "v": a * eps - sigma * x0}[self.prediction]
        return out.to(x_t.device, x_t.dtype)


def timestep_draws(
    data: Tensor, timesteps: Sequence[int], n: int, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Fixed evaluation draws: for every timestep in `timesteps`, `n` rows of `data` (drawn
    with replacement) and `n` noise vectors, all from one generator seeded with `seed`.
    Returns (x0, t, noise), each of len(timesteps) * n rows, timestep-major."""
    if n < 1 or len(timesteps) == 0:
        raise ValueError(f"need n >= 1 and at least one timestep, got n={n}, {list(timesteps)}")
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(len(data), (len(timesteps) * n,), generator=generator)
    x0 = data[index]
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    t = torch.as_tensor(list(timesteps), dtype=torch.long).repeat_interleave(n)
    return x0, t, noise


@dataclass(frozen=True)
class ExcessRisk:
    """Per timestep: a model's MSE, the optimum's MSE on the same draws, their difference
    (the excess risk) and the mean squared distance between the two denoisers (its
    noise-free estimate). MSE is per coordinate, as in ``diffusion.per_sample_loss``."""

    timesteps: np.ndarray  # (n_t,)
    mse: np.ndarray
    optimal_mse: np.ndarray
    distance: np.ndarray

    @property
    def excess(self) -> np.ndarray:
        return self.mse - self.optimal_mse


@torch.no_grad()
def excess_risk(
    model: Model,
    optimum: Model,
    schedule: Schedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    prediction: str = "eps",
    batch_size: int = 8192,
) -> ExcessRisk:
    """Excess risk of `model` over `optimum` (e.g. a :class:`MixtureDenoiser`) per distinct
    timestep of `t`, from the draws (x0, t, noise) (see :func:`timestep_draws`); the model
    runs on its own device, in eval mode, and is put back in its previous mode."""
    check_prediction(prediction)
    if not (x0.shape == noise.shape and t.shape == x0.shape[:1]):
        raise ValueError("x0 and noise must have one shape and t one entry per row")
    module = model if isinstance(model, torch.nn.Module) else None
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    device = model_device(model)
    sq_model, sq_opt, sq_dist = [], [], []
    for part in zip(*(v.split(batch_size) for v in (x0, t, noise)), strict=True):
        x, tt, eps = part
        x_t = schedule.q_sample(x, tt, eps)
        target = schedule.target(x, eps, tt, prediction).double()
        out = model(x_t.to(device), tt.to(device)).to("cpu", torch.float64)
        best = optimum(x_t.double(), tt).to("cpu", torch.float64)
        sq_model.append(((out - target) ** 2).flatten(1).mean(1))
        sq_opt.append(((best - target) ** 2).flatten(1).mean(1))
        sq_dist.append(((out - best) ** 2).flatten(1).mean(1))
    if module is not None:
        module.train(was_training)
    ts, inverse = torch.unique(t, return_inverse=True)
    counts = torch.bincount(inverse).double()

    def per_t(values: list[Tensor]) -> np.ndarray:
        sums = torch.zeros(len(ts), dtype=torch.float64).index_add_(0, inverse, torch.cat(values))
        return (sums / counts).numpy()

    return ExcessRisk(ts.numpy(), per_t(sq_model), per_t(sq_opt), per_t(sq_dist))
