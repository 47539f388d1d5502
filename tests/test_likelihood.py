"""The bound and the held-out losses against torch.distributions, quadrature, mpmath, a brute-
force simulation of the bound's definition, closed-form expectations for Gaussian data with its
exact denoiser, and a per-timestep reference loop over the smoke U-Net."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate
from scipy import stats as scipy_stats
from torch.distributions import Normal, kl_divergence

from mtl_diffusion.diffusion import Schedule, make_schedule, per_sample_loss
from mtl_diffusion.likelihood import (
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    elbo_terms,
    gaussian_kl,
    importance_proposal,
    timestep_losses,
)
from mtl_diffusion.models import UNet

M, S = 0.3, 0.5  # the 1-D data N(M, S^2)
ENTROPY = 0.5 * math.log(2 * math.pi * math.e * S**2)  # E[-log p(x0)], the true NLL


def gaussian_data(n: int, seed: int) -> torch.Tensor:
    return M + S * torch.randn(
        n, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def optimal_denoiser(schedule: Schedule, prediction: str = "eps"):
    """The exact E[x0 | x_t] for x0 ~ N(M, S^2), as the given prediction type."""
    ab = schedule.alphas_cumprod

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, var = ab[t].sqrt().view(-1, 1), (1 - ab[t]).view(-1, 1)
        x0 = M + a * S**2 / (a**2 * S**2 + var) * (x_t - a * M)
        eps = (x_t - a * x0) / var.sqrt()
        return {"eps": eps, "x0": x0, "v": a * eps - var.sqrt() * x0}[prediction]

    return denoise


@np.errstate(divide="ignore", invalid="ignore")  # t = 0 (tilde beta_0 = 0) is dropped below
def expected_bound(schedule: Schedule, variance: str) -> float:
    """E over data and noise of the bound for the optimal denoiser, from Gaussian algebra:
    E[(x0 - E[x0|x_t])^2] = Var(x0 | x_t) = S^2 (1 - ab) / (ab S^2 + 1 - ab)."""
    b, ab = schedule.betas.numpy(), schedule.alphas_cumprod.numpy()
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    cond_var = S**2 * (1 - ab) / (ab * S**2 + 1 - ab)
    v = 1 - ab[-1]
    prior = 0.5 * (v + ab[-1] * (M**2 + S**2) - 1 - math.log(v))
    tilde = b * (1 - ab_prev) / (1 - ab)
    sigma2 = tilde if variance == "posterior" else b
    coef = np.sqrt(ab_prev) * b / (1 - ab)
    kl = 0.5 * (np.log(sigma2 / tilde) + (tilde + coef**2 * cond_var) / sigma2 - 1)
    decoder = 0.5 * math.log(2 * math.pi * b[0]) + cond_var[0] / (2 * b[0])
    return float(prior + kl[1:].sum() + decoder)


def test_gaussian_kl_is_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g)
    v1, v2 = (torch.rand(50, generator=g, dtype=torch.float64) + 0.01 for _ in range(2))
    want = kl_divergence(Normal(m1, v1.sqrt()), Normal(m2.double(), v2.sqrt()))
    torch.testing.assert_close(gaussian_kl(m1, v1, m2.double(), v2), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("levels", [17, 256])
@pytest.mark.parametrize("mean, std", [(0.0, 0.3), (0.93, 0.02), (-0.6, 1.5)])
def test_discretized_gaussian_is_the_integral_over_each_bin(levels, mean, std) -> None:
    x = torch.linspace(-1, 1, levels, dtype=torch.float64)
    mean_, std_ = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    got = discretized_gaussian_log_likelihood(x, mean_, std_, levels).exp()
    edges = np.concatenate([[-np.inf], (x[:-1] + x[1:]).numpy() / 2, [np.inf]])
    pdf = scipy_stats.norm(mean, std).pdf
    want = [
        integrate.quad(pdf, lo, hi, epsabs=1e-14)[0]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-13)
    assert float(got.sum()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("x, mean", [(-1.0, 0.9), (-1 + 20 / 255, 0.9), (1 - 20 / 255, -0.9)])
def test_discretized_gaussian_far_tails_match_mpmath(x, mean) -> None:
    std, half = 0.005, 1 / 255
    with mpmath.workdps(30):  # a bin's mass from erfc on its own tail's side: no cancellation
        lo = -mpmath.inf if x == -1.0 else (mpmath.mpf(x) - half - mean) / std
        hi = (mpmath.mpf(x) + half - mean) / std
        r = mpmath.sqrt(2)
        if hi < 0:
            mass = (mpmath.erfc(-hi / r) - mpmath.erfc(-lo / r)) / 2
        else:
            mass = (mpmath.erfc(lo / r) - mpmath.erfc(hi / r)) / 2
        want = float(mpmath.log(mass))
    got = discretized_gaussian_log_likelihood(
        *(torch.tensor(v, dtype=torch.float64) for v in (x, mean, std))
    )
    assert math.isfinite(float(got))
    assert float(got) == pytest.approx(want, rel=1e-10)


def brute_force_bound(schedule: Schedule, variance: str, n: int) -> tuple[float, float]:
    """E_q[log q(x_{0:T-1} | x0) - log p(x0, ..., x_{T-1})] by simulating forward chains with
    q(x_t | x_{t-1}) = N(sqrt(1 - b_t) x_{t-1}, b_t) and scoring every transition; the reverse
    mean in Ho et al.'s eps form (x_t - b_t / sqrt(1 - ab_t) eps_hat) / sqrt(1 - b_t).
    Mean and standard error over chains."""
    b, ab = schedule.betas, schedule.alphas_cumprod
    tilde = torch.cat([b[:1], b[1:] * (1 - ab[:-1]) / (1 - ab[1:])])
    sigma2 = tilde if variance == "posterior" else b
    sigma2 = torch.cat([b[:1], sigma2[1:]])  # the decoder's variance is beta_0
    eps_hat = optimal_denoiser(schedule, "eps")
    g = torch.Generator().manual_seed(5)
    x0 = gaussian_data(n, 6)
    xs, prev, log_ratio = [], x0, torch.zeros(n, 1, dtype=torch.float64)
    for t in range(schedule.T):
        x = (1 - b[t]).sqrt() * prev + b[t].sqrt() * torch.randn(n, 1, generator=g, dtype=x0.dtype)
        log_ratio += Normal((1 - b[t]).sqrt() * prev, b[t].sqrt()).log_prob(x)
        xs.append(x)
        prev = x
    log_ratio -= Normal(0.0, 1.0).log_prob(xs[-1])
    for t in range(schedule.T):
        step = torch.full((n,), t)
        mean = (xs[t] - b[t] / (1 - ab[t]).sqrt() * eps_hat(xs[t], step)) / (1 - b[t]).sqrt()
        target = xs[t - 1] if t > 0 else x0
        log_ratio -= Normal(mean, sigma2[t].sqrt()).log_prob(target)
    return float(log_ratio.mean()), float(log_ratio.std() / math.sqrt(n))


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_the_bound_is_its_definition_simulated(variance) -> None:
    schedule = make_schedule("cosine", 10)
    want, want_se = brute_force_bound(schedule, variance, 200_000)
    x0 = gaussian_data(20_000, 7)
    total = elbo_terms(
        optimal_denoiser(schedule, "v"),
        schedule,
        x0,
        prediction="v",
        variance=variance,
        decoder="continuous",
        clip_x0=False,
    ).total
    se = math.hypot(want_se, float(total.std()) / math.sqrt(len(total)))
    assert abs(float(total.mean()) - want) < 4 * se, (float(total.mean()), want, se)
    assert abs(expected_bound(schedule, variance) - want) < 4 * want_se


def test_the_bound_exceeds_the_true_nll_by_a_gap_that_shrinks_with_T() -> None:
    """Gaussian data, exact denoiser, variance beta_t (the right one when x0 has unit-order
    spread). Per-image bound minus -log N(x0; M, S^2): its mean is the gap to the true NLL,
    which the closed form puts at 0.057 (T = 10), 0.020 (30), 0.002 (300) nats."""
    x0 = gaussian_data(20_000, 8)
    nll = -Normal(M, S).log_prob(x0).squeeze(1)
    gaps = {}
    for T in (10, 30, 300):
        schedule = make_schedule("cosine", T)
        terms = elbo_terms(
            optimal_denoiser(schedule),
            schedule,
            x0,
            variance="beta",
            decoder="continuous",
            clip_x0=False,
            batch_size=1 << 18,
            seed=T,
        )
        excess = terms.total - nll
        gaps[T] = (float(excess.mean()), float(excess.std()) / math.sqrt(len(x0)))
        want = expected_bound(schedule, "beta") - ENTROPY
        assert abs(gaps[T][0] - want) < 4 * gaps[T][1], (T, gaps[T], want)
    assert gaps[10][0] > 4 * gaps[10][1], gaps  # a real gap at T = 10 ...
    assert gaps[300][0] > -4 * gaps[300][1], gaps  # ... never below the NLL ...
    assert gaps[10][0] - gaps[300][0] > 4 * math.hypot(gaps[10][1], gaps[300][1]), gaps  # shrinks
    closed_form = [expected_bound(make_schedule("cosine", T), "beta") for T in (10, 30, 300, 1000)]
    assert all(np.diff(closed_form) < 0) and closed_form[-1] > ENTROPY, closed_form


def test_importance_sampling_is_unbiased_for_the_exact_sum() -> None:
    schedule = make_schedule("cosine", 100)
    x0 = gaussian_data(4_000, 9)
    options = dict(variance="posterior", decoder="continuous", clip_x0=False, seed=3)
    denoise = optimal_denoiser(schedule)
    exact = elbo_terms(denoise, schedule, x0, **options)
    proposals = {
        "uniform": None,
        "1/t": 1.0 / torch.arange(1, 100.0),
        "tuned": importance_proposal(exact),
    }
    spread = {}
    for name, proposal in proposals.items():
        sampled = elbo_terms(denoise, schedule, x0, timesteps=2, proposal=proposal, **options)
        assert torch.equal(sampled.decoder, exact.decoder) and sampled.per_step is None
        d = sampled.transitions - exact.transitions
        se = float(d.std()) / math.sqrt(len(d))
        assert abs(float(d.mean())) < 4 * se, (name, float(d.mean()), se)
        spread[name] = float(sampled.transitions.std())
    assert spread["tuned"] < spread["uniform"], spread


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def posterior_mean(schedule: Schedule, t: int, x0: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """Ho et al.'s eq. 7: the mean of q(x_{t-1} | x_t, x0) (package index t >= 1)."""
    b, ab = schedule.betas[t], schedule.alphas_cumprod
    return (ab[t - 1].sqrt() * b * x0 + (1 - b).sqrt() * (1 - ab[t - 1]) * x_t) / (1 - ab[t])


def reference_loop(model, schedule, x0, prediction, clip_x0, variance, levels, seed):
    """Every term one timestep at a time with torch.distributions, Ho et al.'s eq. 7 posterior
    and the normal CDF differences (scipy) for the decoder; noise as elbo_terms documents."""
    g = torch.Generator().manual_seed(seed)
    b, ab = schedule.betas, schedule.alphas_cumprod
    x = x0.double()

    def x0_hat(t: int, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_t = (ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * noise).float()
        out = model(x_t, torch.full((len(x0),), t)).double()
        a, s = ab[t].sqrt(), (1 - ab[t]).sqrt()
        est = {"eps": (x_t - s * out) / a, "x0": out, "v": a * x_t - s * out}[prediction]
        return x_t.double(), est.clamp(-1, 1) if clip_x0 else est

    with torch.no_grad():
        _, est = x0_hat(0, torch.randn(x0.shape, generator=g))
        edges = np.concatenate(
            [[-np.inf], (np.arange(levels - 1) + 0.5) * 2 / (levels - 1) - 1, [np.inf]]
        )
        k = np.rint((x.numpy() + 1) * (levels - 1) / 2).astype(int)
        cdf = scipy_stats.norm(est.numpy(), math.sqrt(float(b[0]))).cdf
        decoder = -np.log(cdf(edges[k + 1]) - cdf(edges[k])).reshape(len(x0), -1).sum(1)
        per_step = []
        for t in range(1, schedule.T):
            x_t, est = x0_hat(t, torch.randn(x0.shape, generator=g))

            tilde = b[t] * (1 - ab[t - 1]) / (1 - ab[t])
            sigma2 = tilde if variance == "posterior" else b[t]
            q, p = posterior_mean(schedule, t, x, x_t), posterior_mean(schedule, t, est, x_t)
            kl = kl_divergence(Normal(q, tilde.sqrt()), Normal(p, sigma2.sqrt()))
            per_step.append(kl.flatten(1).sum(1))
        prior = kl_divergence(Normal(ab[-1].sqrt() * x, (1 - ab[-1]).sqrt()), Normal(0.0, 1.0))
    return prior.flatten(1).sum(1), torch.stack(per_step, 1), torch.from_numpy(decoder)


@pytest.mark.parametrize(
    "prediction, clip_x0, variance", [("eps", False, "posterior"), ("v", True, "beta")]
)
def test_the_smoke_unet_terms_equal_a_per_timestep_loop(prediction, clip_x0, variance) -> None:
    T, levels = 12, 17
    schedule = make_schedule("cosine", T)
    model = randomize(UNet(base_channels=8, num_groups=4, num_timesteps=T))
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, levels, (5, 1, 8, 8), generator=g).float() * 2 / (levels - 1) - 1
    options = dict(prediction=prediction, clip_x0=clip_x0, variance=variance, levels=levels, seed=4)
    terms = elbo_terms(model, schedule, x0, batch_size=7, **options)  # chunks cross timesteps
    prior, per_step, decoder = reference_loop(
        model, schedule, x0, prediction, clip_x0, variance, levels, seed=4
    )
    torch.testing.assert_close(terms.prior, prior, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(terms.per_step, per_step, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms.decoder, decoder, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms.transitions, per_step.sum(1), rtol=1e-5, atol=1e-6)
    one_batch = elbo_terms(model, schedule, x0, **options).total  # float32 forwards: rounding
    torch.testing.assert_close(terms.total, one_batch, rtol=1e-6, atol=0.0)
    summary = bits_per_dim(model, schedule, x0, **options)
    want = terms.total / (64 * math.log(2))
    assert math.isfinite(summary.mean) and summary.mean == pytest.approx(float(want.mean()))
    assert summary.sem == pytest.approx(float(want.std()) / math.sqrt(5))


def test_timestep_losses_share_x_t_across_models_and_match_the_bound() -> None:
    """Same seed: both models see the same x_t; each row is per_sample_loss on the documented
    noise; for eps prediction each KL term is Ho et al.'s eq. 12 weight times the summed MSE."""
    T = 12
    schedule = make_schedule("cosine", T)
    seen: dict[str, list[torch.Tensor]] = {"a": [], "b": []}

    def recorder(name: str, scale: float):
        def denoise(x_t, t):
            seen[name].append(x_t.clone())
            return scale * x_t

        return denoise

    x0 = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    losses = timestep_losses(recorder("a", 0.5), schedule, x0, range(T), seed=9, batch_size=4)
    timestep_losses(recorder("b", -1.0), schedule, x0, range(T), seed=9)
    assert torch.equal(torch.cat(seen["a"]), torch.cat(seen["b"])) and losses.shape == (T, 6)
    g = torch.Generator().manual_seed(9)
    for t in range(T):
        noise = torch.randn(x0.shape, generator=g)
        want = per_sample_loss(lambda x, s: 0.5 * x, schedule, x0, torch.full((6,), t), noise)
        torch.testing.assert_close(losses[t], want.double())
    terms = elbo_terms(
        lambda x, s: 0.5 * x,
        schedule,
        x0,
        decoder="continuous",
        clip_x0=False,
        variance="beta",
        seed=9,
    )
    b, ab = schedule.betas[1:], schedule.alphas_cumprod
    tilde = b * (1 - ab[:-1]) / (1 - ab[1:])
    weight = b**2 / (2 * b * (1 - b) * (1 - ab[1:]))  # eq. 12 with sigma_t^2 = beta_t
    constant = 0.5 * (tilde / b - 1 - torch.log(tilde / b))
    want = 16 * (weight * losses[1:].T + constant)
    torch.testing.assert_close(terms.per_step, want, rtol=1e-5, atol=1e-8)


def test_arguments_are_validated_by_name() -> None:
    schedule = make_schedule("cosine", 10)
    zero = optimal_denoiser(schedule)
    x0 = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="levels=256"):
        elbo_terms(zero, schedule, torch.full((2, 1), 0.5))
    with pytest.raises(ValueError, match="levels=17"):
        elbo_terms(zero, schedule, torch.full((2, 1), 0.1), levels=17)
    for kw, name in [
        ({"variance": "learned"}, "variance"),
        ({"decoder": "logit"}, "decoder"),
        ({"timesteps": 0}, "timesteps"),
        ({"proposal": torch.ones(9)}, "proposal"),
        ({"timesteps": 2, "proposal": torch.ones(3)}, "proposal"),
        ({"prediction": "score"}, "prediction"),
        ({"batch_size": 0}, "batch_size"),
    ]:
        with pytest.raises(ValueError, match=name):
            elbo_terms(zero, schedule, x0, **({"decoder": "continuous"} | kw))
    with pytest.raises(ValueError, match="timesteps"):
        timestep_losses(zero, schedule, x0, [10])
    with pytest.raises(ValueError, match="terms"):
        importance_proposal(elbo_terms(zero, schedule, x0, decoder="continuous", timesteps=1))
