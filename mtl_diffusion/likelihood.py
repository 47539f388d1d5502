"""Held-out evaluation of a denoiser: per-timestep loss at fixed t and the variational bound.

Both draw their noise from ``torch.Generator().manual_seed(seed)`` on the CPU, one
(N, *shape) draw per timestep in the order evaluated, so two models called with the same data
and seed see the same x_t (common random numbers across arms); the draws do not depend on
``batch_size`` or on the model's device (the results only through float rounding).
:func:`timestep_losses` over ``range(T)`` draws the same noise as the exact :func:`elbo_terms`,
which evaluates t = 0, 1, ..., T - 1 in that order.

The bound (Ho et al. 2020, eq. 5; Nichol & Dhariwal 2021, sec. 2) in nats per image, in this
package's indexing (t = 0 is the papers' step 1; q(x_t | x0) = N(sqrt(ab_t) x0, (1 - ab_t) I)):

    -log p(x0) <= KL(q(x_{T-1} | x0) || N(0, I))                                  prior
                + sum_{t=1}^{T-1} E_q KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))   transitions
                + E_q[-log p(x0 | x_0)]                                            decoder

p(x_{t-1} | x_t) is Gaussian with the posterior mean at the model's x0 estimate and a fixed
variance: ``variance="posterior"`` (tilde beta_t, the samplers' choice) or ``"beta"`` (beta_t).
tilde beta is 0 at t = 0, so the decoder always has variance beta_0 (the published code uses
tilde beta_1 there); it is discretized over the data's grid of levels or, as an option, the
continuous Gaussian density. The prior term is closed form.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mtl_diffusion.diffusion import Model, Schedule, check_prediction, model_device, per_sample_loss
from mtl_diffusion.stats import Summary, summarize

VARIANCES = ("posterior", "beta")
DECODERS = ("discrete", "continuous")


def gaussian_kl(mean1: Tensor, var1: Tensor, mean2: Tensor, var2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, var1) || N(mean2, var2)) in nats (variances, not std)."""
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def _log1mexp(a: Tensor) -> Tensor:
    """log(1 - exp(a)) for a <= 0, accurate at both ends."""
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def discretized_gaussian_log_likelihood(
    x: Tensor, mean: Tensor, std: Tensor, levels: int = 256
) -> Tensor:
    """Elementwise log P(bin of x) under N(mean, std^2): x on the grid of ``levels`` values in
    [-1, 1], bins of width 2 / (levels - 1) centred on them, the two edge bins open to -inf / inf.
    Computed in log space (log_ndtr), so far tails stay finite."""
    if levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels}")
    half = 1.0 / (levels - 1)
    upper, lower = (x - mean + half) / std, (x - mean - half) / std
    # interior bins: log(Phi(u) - Phi(l)), reflected to the lower tail when the bin lies above
    flip = (upper + lower) > 0
    hi = torch.where(flip, -lower, upper)
    lo = torch.where(flip, -upper, lower)
    log_hi = torch.special.log_ndtr(hi)
    interior = log_hi + _log1mexp(torch.special.log_ndtr(lo) - log_hi)
    first = torch.special.log_ndtr(upper)  # x = -1: (-inf, -1 + half]
    last = torch.special.log_ndtr(-lower)  # x = 1: [1 - half, inf)
    return torch.where(x < -1.0 + half, first, torch.where(x > 1.0 - half, last, interior))


def check_levels(x0: Tensor, levels: int) -> None:
    """Raise ValueError unless ``x0`` lies on the grid k * 2 / (levels - 1) - 1, k = 0..levels-1."""
    k = (x0.double() + 1.0) * (levels - 1) / 2.0
    nearest = k.round()
    if not bool(
        ((k - nearest).abs() <= 1e-3).all() & (nearest >= 0).all() & (nearest < levels).all()
    ):
        raise ValueError(
            f"x0 must lie on the grid of levels={levels} values in [-1, 1] "
            f"(k * 2 / (levels - 1) - 1): 8-bit images x / 127.5 - 1 have levels=256, the "
            f"bundled digits (pixel / 8 - 1) levels=17; or use decoder='continuous'"
        )


@contextmanager
def _evaluating(denoise: Model) -> Iterator[None]:
    """no_grad, and eval mode for a module (restored afterwards)."""
    was_training = isinstance(denoise, nn.Module) and denoise.training
    if isinstance(denoise, nn.Module):
        denoise.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            denoise.train()


def _check_x0(x0: Tensor, batch_size: int) -> None:
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim < 2 or not len(x0):
        raise ValueError("x0 must be a non-empty float tensor with one sample per row")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("x0 holds NaN or infinite values")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _randn(shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    return torch.randn(tuple(shape), generator=generator, dtype=dtype)


def denoising_losses(
    denoise: Model,
    schedule: Schedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    *,
    prediction: str = "eps",
    batch_size: int = 1024,
) -> Tensor:
    """``per_sample_loss`` (B,) computed ``batch_size`` rows at a time on the model's device
    (inputs may live anywhere), without gradients and in eval mode; returned on the CPU."""
    _check_x0(x0, batch_size)
    device = model_device(denoise)
    schedule = schedule.to(device)
    parts = []
    with _evaluating(denoise):
        for i in range(0, len(x0), batch_size):
            rows = (v[i : i + batch_size].to(device) for v in (x0, t, noise))
            parts.append(per_sample_loss(denoise, schedule, *rows, prediction).cpu())
    return torch.cat(parts)


def timestep_losses(
    denoise: Model,
    schedule: Schedule,
    x0: Tensor,
    timesteps: Sequence[int],
    *,
    prediction: str = "eps",
    seed: int = 0,
    batch_size: int = 1024,
) -> Tensor:
    """Held-out denoising loss (the training MSE) of every image at each fixed timestep:
    float64 (len(timesteps), N). Noise: one (N, *shape) draw per timestep, in the given order,
    from a generator seeded with ``seed`` (the same for every model)."""
    steps = [int(s) for s in timesteps]
    if not steps or min(steps) < 0 or max(steps) >= schedule.T:
        raise ValueError(f"timesteps must be a non-empty list of steps in [0, {schedule.T - 1}]")
    _check_x0(x0, batch_size)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for step in steps:
        noise = _randn(x0.shape, generator, x0.dtype)
        t = torch.full((len(x0),), step, dtype=torch.long)
        losses = denoising_losses(
            denoise, schedule, x0, t, noise, prediction=prediction, batch_size=batch_size
        )
        rows.append(losses.double())
    return torch.stack(rows)


@dataclass(frozen=True)
class ELBOTerms:
    """Per-image terms of the bound in nats (float64 on the CPU); ``dims`` values per image."""

    prior: Tensor  # (N,) KL(q(x_{T-1} | x0) || N(0, I)), exact
    transitions: Tensor  # (N,) sum of the KL terms t = 1..T-1, exact or importance-sampled
    decoder: Tensor  # (N,) -log p(x0 | x at t = 0)
    per_step: Tensor | None  # (N, T - 1) the KL terms t = 1..T-1 (exact sum only)
    dims: int

    @property
    def total(self) -> Tensor:
        """The bound on -log p(x0) per image, nats."""
        return self.prior + self.transitions + self.decoder

    @property
    def bits_per_dim(self) -> Tensor:
        """The bound per image in bits per dimension: total / (dims log 2)."""
        return self.total / (self.dims * math.log(2.0))


@dataclass(frozen=True)
class _Setup:
    """What every forward of one bound evaluation shares."""

    denoise: Model
    schedule: Schedule  # on the model's device
    prediction: str
    clip_x0: bool
    variance: str
    batch_size: int
    device: torch.device

    def estimate(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """The model's x0 estimate (float64, on the device) for one batch of rows."""
        x0, t, noise = x0.to(self.device), t.to(self.device), noise.to(self.device)
        x_t = self.schedule.q_sample(x0, t, noise)
        output = self.denoise(x_t, t)
        if output.shape != x0.shape:
            raise ValueError(
                f"denoise output must have shape {tuple(x0.shape)}, got {output.shape}"
            )
        x_t = x_t.double()
        _, x0_hat = self.schedule.model_output_to_eps_x0(output.double(), x_t, t, self.prediction)
        return x0_hat.clamp(-1.0, 1.0) if self.clip_x0 else x0_hat

    def transition_kl(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) per row (t >= 1), float64 on the CPU.
        The two means differ by c_t (x0 - x0_hat), c_t = sqrt(ab_{t-1}) beta_t / (1 - ab_t)."""
        parts = []
        for i in range(0, len(x0), self.batch_size):
            rows = slice(i, i + self.batch_size)
            x0_hat = self.estimate(x0[rows], t[rows], noise[rows])
            step = t[rows].to(self.device)
            beta, ab = self.schedule.betas[step], self.schedule.alphas_cumprod[step]
            ab_prev = self.schedule.alphas_cumprod[step - 1]
            posterior_var = beta * (1.0 - ab_prev) / (1.0 - ab)
            model_var = posterior_var if self.variance == "posterior" else beta
            shape = (-1,) + (1,) * (x0.ndim - 1)
            coef = (ab_prev.sqrt() * beta / (1.0 - ab)).view(shape)
            delta = coef * (x0[rows].to(self.device).double() - x0_hat)
            zero = torch.zeros_like(delta)
            kl = gaussian_kl(delta, posterior_var.view(shape), zero, model_var.view(shape))
            parts.append(kl.flatten(1).sum(dim=1).cpu())
        return torch.cat(parts)

    def decoder_nats(self, x0: Tensor, noise: Tensor, decoder: str, levels: int) -> Tensor:
        """-log p(x0 | x at t = 0) per image, variance beta_0, float64 on the CPU."""
        std = self.schedule.betas[0].sqrt()
        parts = []
        for i in range(0, len(x0), self.batch_size):
            rows = slice(i, i + self.batch_size)
            t = torch.zeros(len(x0[rows]), dtype=torch.long)
            x0_hat = self.estimate(x0[rows], t, noise[rows])
            target = x0[rows].to(self.device).double()
            if decoder == "discrete":
                log_p = discretized_gaussian_log_likelihood(target, x0_hat, std, levels)
            else:
                log_p = torch.distributions.Normal(x0_hat, std).log_prob(target)
            parts.append(-log_p.flatten(1).sum(dim=1).cpu())
        return torch.cat(parts)


def _check_proposal(proposal: Tensor | None, timesteps: int | None, T: int) -> Tensor:
    """The proposal over t = 1..T-1, normalised (uniform when None)."""
    if timesteps is not None and (not isinstance(timesteps, int) or timesteps < 1):
        raise ValueError(f"timesteps must be None (exact sum) or an integer >= 1, got {timesteps}")
    if proposal is None:
        return torch.full((T - 1,), 1.0 / (T - 1), dtype=torch.float64)
    if timesteps is None:
        raise ValueError("proposal needs timesteps (the number of sampled t per image)")
    p = torch.as_tensor(proposal, dtype=torch.float64).cpu()
    if p.shape != (T - 1,) or not bool(torch.isfinite(p).all() & (p > 0).all()):
        raise ValueError(f"proposal must hold T - 1 = {T - 1} finite values > 0 (t = 1..T-1)")
    return p / p.sum()


def elbo_terms(
    denoise: Model,
    schedule: Schedule,
    x0: Tensor,
    *,
    prediction: str = "eps",
    seed: int = 0,
    timesteps: int | None = None,
    proposal: Tensor | None = None,
    variance: str = "posterior",
    decoder: str = "discrete",
    levels: int = 256,
    clip_x0: bool = True,
    batch_size: int = 1024,
) -> ELBOTerms:
    """Per-image terms of the DDPM bound on -log p(x0), nats (module docstring for the form).

    ``timesteps=None`` sums all T - 1 transition terms (T - 1 forwards per image); an integer K
    estimates their sum per image as mean_k KL_{t_k} / p(t_k) with t_k ~ ``proposal`` (over
    t = 1..T-1, default uniform; strictly positive, normalised here): unbiased, with variance
    Var_p(KL_t / p(t)) / K per image, which the spread over images includes. Use one proposal for
    all arms (e.g. :func:`importance_proposal` of a reference model's exact terms) so that they
    share the draws. The decoder is discretized over ``levels`` grid values (x0 must lie on the
    grid) or, with ``decoder="continuous"``, the Gaussian density. ``clip_x0`` clamps the x0
    estimate to [-1, 1], as the samplers do. Noise: the decoder's (N, *shape) draw first, then
    one per timestep t = 1..T-1 (exact), or the N * K timesteps and then their (N * K, *shape)
    noise, image-major.
    """
    check_prediction(prediction)
    _check_x0(x0, batch_size)
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if decoder == "discrete":
        if not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
        check_levels(x0, levels)
    T = schedule.T
    p = _check_proposal(proposal, timesteps, T)
    device = model_device(denoise)
    setup = _Setup(denoise, schedule.to(device), prediction, clip_x0, variance, batch_size, device)
    generator = torch.Generator().manual_seed(seed)
    n, rest = len(x0), (1,) * (x0.ndim - 1)

    ab_last = schedule.alphas_cumprod[-1].cpu()
    mean = ab_last.sqrt() * x0.double().cpu()
    prior = gaussian_kl(mean, 1.0 - ab_last, torch.zeros_like(mean), torch.ones(()))
    with _evaluating(denoise):
        decoder_nats = setup.decoder_nats(
            x0, _randn(x0.shape, generator, x0.dtype), decoder, levels
        )
        if timesteps is None:
            per_step = torch.empty(n, T - 1, dtype=torch.float64)
            block = max(1, batch_size // n)  # timesteps per forward when the images are few
            for first in range(1, T, block):
                steps = range(first, min(first + block, T))
                noise = torch.cat([_randn(x0.shape, generator, x0.dtype) for _ in steps])
                t = torch.tensor(steps, dtype=torch.long).repeat_interleave(n)
                kl = setup.transition_kl(x0.repeat((len(steps),) + rest), t, noise)
                per_step[:, first - 1 : first - 1 + len(steps)] = kl.view(len(steps), n).T
            transitions = per_step.sum(dim=1)
        else:
            t = torch.multinomial(p, n * timesteps, replacement=True, generator=generator) + 1
            noise = _randn((n * timesteps, *x0.shape[1:]), generator, x0.dtype)
            kl = setup.transition_kl(x0.repeat_interleave(timesteps, dim=0), t, noise)
            transitions = (kl / p[t - 1]).view(n, timesteps).mean(dim=1)
            per_step = None
    return ELBOTerms(
        prior.flatten(1).sum(dim=1), transitions, decoder_nats, per_step, x0[0].numel()
    )


def bits_per_dim(denoise: Model, schedule: Schedule, x0: Tensor, **options) -> Summary:
    """The bound in bits per dimension over the images of ``x0``: mean, sd, standard error
    (sem) and count; ``options`` are :func:`elbo_terms`'s. Per-image values (for paired
    comparisons on shared noise): ``elbo_terms(...).bits_per_dim``."""
    return summarize(elbo_terms(denoise, schedule, x0, **options).bits_per_dim.numpy())


def importance_proposal(terms: ELBOTerms) -> Tensor:
    """Proposal over t = 1..T-1 proportional to sqrt(mean over images of KL_t^2), the variance-
    minimising shared proposal (Nichol & Dhariwal 2021, sec. 3.3), from exact ``terms``."""
    if terms.per_step is None:
        raise ValueError("terms must come from the exact sum (elbo_terms with timesteps=None)")
    p = terms.per_step.pow(2).mean(dim=0).sqrt()
    return p / p.sum()
