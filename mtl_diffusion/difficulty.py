"""How hard is each denoising task? The two measurements behind the difficulty curriculum.

1. Convergence speed (:func:`snapshot_curves`): the held-out loss of every timestep interval
   at snapshots of ordinary (uniform-t) training, normalised per interval in one of two ways:
   divided by its final value (``"ratio"``; a curve that reaches 1 late converges slowly), or as
   the fraction of its total decrease achieved so far (``"progress"``, 0 at the first snapshot,
   1 at the last). They can disagree: the ratio magnifies small absolute changes of a loss
   whose final value is near 0 (high-noise epsilon-prediction), the progress ignores them.
2. Relative entropy between consecutive noisy marginals, KL(p_{t-1} || p_t): how much the
   distribution the denoiser must map between changes from one step to the next.

For Gaussian data N(m, S) the marginal is p_t = N(sqrt(ab_t) m, ab_t S + (1 - ab_t) I) and the
KL has a closed form (:func:`gaussian_marginal_kl`). For a Gaussian mixture (the 8-Gaussians toy)
p_t is again a Gaussian mixture whose density is known exactly but whose KL is not:
:func:`mixture_marginal_kl` estimates it by Monte Carlo over samples of p_{t-1} with the exact
log-densities. The digits are treated as their empirical distribution, a mixture of Diracs at the
training images (:meth:`GaussianMixture.from_data`): p_t is then a mixture of N Gaussians of
variance 1 - ab_t, and the same estimator applies. (That measures the training SET's marginals:
once the noise is below the distance between neighbouring images, the components separate.)

The Monte Carlo estimator averages ``r - 1 - log r`` with ``r = p_t(x) / p_{t-1}(x)`` over
``x ~ p_{t-1}``: unbiased (E[r] = 1), never negative, and with a relative error that stays
bounded as the KL goes to zero, unlike the plain average of ``-log r``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mtl_diffusion.affinity import Snapshots
from mtl_diffusion.clustering import Interval, validate_intervals
from mtl_diffusion.diffusion import Schedule
from mtl_diffusion.likelihood import denoising_losses

# --- 1. convergence speed of each interval's loss --------------------------------------------


@torch.no_grad()
def interval_losses(
    model: nn.Module,
    schedule: Schedule,
    data: torch.Tensor,
    intervals: Sequence[Interval],
    *,
    prediction: str = "eps",
    seed: int = 0,
    batch_size: int = 1024,
) -> np.ndarray:
    """Mean held-out loss per interval, shape (k,): every data point once per interval, at a t
    uniform in the interval. The t and the noise depend only on `seed` (common random numbers);
    drawn on the CPU, they move to the model's device with the data, batch by batch
    (``likelihood.denoising_losses``). Fixed t instead: ``likelihood.timestep_losses``."""
    pairs = validate_intervals(intervals, schedule.T)
    generator = torch.Generator().manual_seed(seed)
    result = []
    for start, end in pairs:
        t = torch.randint(start, end + 1, (len(data),), generator=generator)
        noise = torch.randn(data.shape, generator=generator, dtype=data.dtype)
        losses = denoising_losses(
            model, schedule, data, t, noise, prediction=prediction, batch_size=batch_size
        )
        result.append(float(losses.double().sum()) / len(data))
    return np.asarray(result)


@dataclass
class ConvergenceCurves:
    """Held-out loss per interval (columns) at training snapshots (rows)."""

    steps: np.ndarray  # (S,)
    losses: np.ndarray  # (S, k)
    intervals: list[Interval]

    def normalised(self) -> np.ndarray:
        """Each interval's curve divided by its value at the last snapshot."""
        return self.losses / self.losses[-1]

    def progress(self) -> np.ndarray:
        """Each interval's fraction of its total decrease achieved, (L_0 - L_s) / (L_0 - L_last),
        with L_0 at the first snapshot (usually the initialisation)."""
        return (self.losses[0] - self.losses) / (self.losses[0] - self.losses[-1])

    def steps_to_converge(self, tolerance: float = 0.1, measure: str = "ratio") -> np.ndarray:
        """Per interval, the first snapshot step from which it stays converged: ``"ratio"``
        within ``1 + tolerance`` of the final loss, ``"progress"`` at least ``1 - tolerance`` of
        the total decrease done. Larger means slower convergence."""
        if tolerance <= 0:
            raise ValueError(f"tolerance must be positive, got {tolerance}")
        if measure not in ("ratio", "progress"):
            raise ValueError(f"measure must be 'ratio' or 'progress', got {measure!r}")
        gap = self.normalised() - 1.0 if measure == "ratio" else 1.0 - self.progress()
        above = gap > tolerance  # (S, k); False at the last snapshot
        last_above = len(self.steps) - 1 - np.argmax(above[::-1], axis=0)
        return self.steps[np.where(above.any(axis=0), last_above + 1, 0)]


def snapshot_curves(
    snapshots: Snapshots,
    model: nn.Module,
    schedule: Schedule,
    data: torch.Tensor,
    intervals: Sequence[Interval],
    *,
    prediction: str = "eps",
    seed: int = 0,
) -> ConvergenceCurves:
    """Held-out :func:`interval_losses` (the same t and noise every time) of a run at each of
    its snapshots (affinity.training_snapshots: a cached run, or a job's): `model`, any module
    of the run's architecture, takes each snapshot's raw weights in turn."""
    rows = []
    for state in snapshots.states:
        model.load_state_dict(state)
        rows.append(interval_losses(model, schedule, data, intervals, prediction=prediction,
                                    seed=seed))  # fmt: skip
    steps = np.asarray(snapshots.steps)
    return ConvergenceCurves(steps, np.stack(rows), validate_intervals(intervals))


def interval_means(ts: np.ndarray, values: np.ndarray, intervals: Sequence[Interval]) -> np.ndarray:
    """Mean of per-timestep `values` (measured at timesteps `ts`) within each interval; nan
    for an interval holding none of `ts`."""
    ts, values = np.asarray(ts), np.asarray(values, dtype=np.float64)
    if ts.shape != values.shape:
        raise ValueError(
            f"ts and values must have the same shape, got {ts.shape} and {values.shape}"
        )
    means = []
    for start, end in validate_intervals(intervals):
        inside = (ts >= start) & (ts <= end)
        means.append(values[inside].mean() if inside.any() else np.nan)
    return np.asarray(means)


# --- 2. relative entropy between consecutive marginals ---------------------------------------


def gaussian_kl(mean0: np.ndarray, cov0: np.ndarray, mean1: np.ndarray, cov1: np.ndarray) -> float:
    """KL(N(mean0, cov0) || N(mean1, cov1)) in closed form (float64); means (d,), covs (d, d)."""
    m0, m1 = (
        np.atleast_1d(np.asarray(mean0, np.float64)),
        np.atleast_1d(np.asarray(mean1, np.float64)),
    )
    s0, s1 = (
        np.atleast_2d(np.asarray(cov0, np.float64)),
        np.atleast_2d(np.asarray(cov1, np.float64)),
    )
    d = m0.shape[0]
    if m1.shape != (d,) or s0.shape != (d, d) or s1.shape != (d, d):
        raise ValueError(
            f"means must have shape (d,) and covs (d, d); got {m0.shape}, {s0.shape}, "
            f"{m1.shape}, {s1.shape}"
        )
    chol1 = np.linalg.cholesky(s1)
    solve = np.linalg.solve(chol1, np.column_stack([s0, m1 - m0]))
    trace = np.trace(np.linalg.solve(chol1.T, solve[:, :d]))
    mahalanobis = float(solve[:, d] @ solve[:, d])
    logdet1 = 2.0 * np.log(np.diag(chol1)).sum()
    logdet0 = np.linalg.slogdet(s0)[1]
    return 0.5 * (trace + mahalanobis - d + logdet1 - logdet0)


def _timesteps(schedule: Schedule, ts: Sequence[int] | np.ndarray | None) -> np.ndarray:
    ts = np.arange(1, schedule.T) if ts is None else np.asarray(ts, dtype=np.int64)
    if ts.ndim != 1 or ts.size == 0 or ts.min() < 1 or ts.max() >= schedule.T:
        raise ValueError(f"ts must be a non-empty 1-D list of timesteps in 1..{schedule.T - 1}")
    return ts


def gaussian_marginal_kl(
    schedule: Schedule,
    mean: np.ndarray,
    cov: np.ndarray,
    ts: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """KL(p_{t-1} || p_t) for Gaussian data N(mean, cov), at every t in `ts` (default 1..T-1)."""
    mean = np.atleast_1d(np.asarray(mean, np.float64))
    cov = np.atleast_2d(np.asarray(cov, np.float64))
    eye = np.eye(mean.shape[0])
    ab = schedule.alphas_cumprod.numpy()

    def marginal(t: int) -> tuple[np.ndarray, np.ndarray]:
        return np.sqrt(ab[t]) * mean, ab[t] * cov + (1.0 - ab[t]) * eye

    return np.asarray(
        [gaussian_kl(*marginal(t - 1), *marginal(t)) for t in _timesteps(schedule, ts)]
    )


@dataclass(frozen=True)
class GaussianMixture:
    """Mixture of isotropic Gaussians: weights (K,), means (K, d), variances (K,) >= 0, float64."""

    weights: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor

    def __post_init__(self) -> None:
        k = self.weights.shape[0]
        if self.means.ndim != 2 or self.means.shape[0] != k or self.variances.shape != (k,):
            raise ValueError("weights (K,), means (K, d) and variances (K,) must agree in K")
        if (self.weights < 0).any() or abs(float(self.weights.sum()) - 1.0) > 1e-9:
            raise ValueError("weights must be non-negative and sum to 1")
        if (self.variances < 0).any():
            raise ValueError("variances must be non-negative")

    @classmethod
    def isotropic(
        cls, means: torch.Tensor, std: float, weights: torch.Tensor | None = None
    ) -> GaussianMixture:
        """Components N(means[k], std^2 I), equal weights unless given."""
        means = means.to(torch.float64)
        k = means.shape[0]
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else weights.double()
        return cls(w, means, torch.full((k,), float(std) ** 2, dtype=torch.float64))

    @classmethod
    def from_data(cls, data: torch.Tensor) -> GaussianMixture:
        """The empirical distribution of `data` (N, ...) flattened: N equal-weight Diracs."""
        return cls.isotropic(data.flatten(1), 0.0)

    def noised(self, alpha_bar: float) -> GaussianMixture:
        """The law of sqrt(ab) x0 + sqrt(1 - ab) eps for x0 from this mixture."""
        return GaussianMixture(
            self.weights,
            alpha_bar**0.5 * self.means,
            alpha_bar * self.variances + (1.0 - alpha_bar),
        )

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn((n, self.means.shape[1]), generator=generator, dtype=torch.float64)
        return self.means[index] + self.variances[index, None].sqrt() * noise

    def log_prob(self, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Exact log-density at the rows of x (n, d); every variance must be positive."""
        if (self.variances <= 0).any():
            raise ValueError("log_prob needs positive variances (noise a Dirac mixture first)")
        d = self.means.shape[1]
        x = x.to(torch.float64)
        const = torch.log(self.weights) - 0.5 * d * torch.log(2 * torch.pi * self.variances)
        sq_means = (self.means**2).sum(1)
        out = []
        for part in x.split(chunk):
            sq = (part**2).sum(1, keepdim=True) - 2.0 * part @ self.means.T + sq_means
            out.append(torch.logsumexp(const - 0.5 * sq.clamp_min(0.0) / self.variances, dim=1))
        return torch.cat(out)


def mixture_marginal_kl(
    schedule: Schedule,
    mixture: GaussianMixture,
    ts: Sequence[int] | np.ndarray | None = None,
    *,
    num_samples: int = 4096,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo KL(p_{t-1} || p_t) for data from `mixture`, at every t in `ts` (default
    1..T-1), and the standard error of each estimate (see the module docstring)."""
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    ab = schedule.alphas_cumprod
    generator = torch.Generator().manual_seed(seed)
    estimates, errors = [], []
    for t in _timesteps(schedule, ts):
        before, after = mixture.noised(float(ab[t - 1])), mixture.noised(float(ab[t]))
        x = before.sample(num_samples, generator)
        log_r = after.log_prob(x) - before.log_prob(x)
        terms = torch.expm1(log_r) - log_r
        estimates.append(float(terms.mean()))
        errors.append(float(terms.std() / num_samples**0.5))
    return np.asarray(estimates), np.asarray(errors)
