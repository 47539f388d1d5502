"""The exact mixture denoiser against independent references (a single Gaussian in closed form,
Tweedie's formula on the mixture's own log-density, brute-force integration over a grid), and
the excess risk against a per-timestep loop of ``diffusion.per_sample_loss``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtl_diffusion.data import gaussian_mixture_8
from mtl_diffusion.difficulty import GaussianMixture
from mtl_diffusion.diffusion import PREDICTIONS, make_schedule, per_sample_loss
from mtl_diffusion.oracle import MixtureDenoiser, excess_risk, timestep_draws

SCHEDULE = make_schedule("linear", 1000)
TS = torch.tensor([0, 10, 25, 60, 150, 400, 700, 999])


def points(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = TS[torch.randint(len(TS), (n,), generator=g)]
    return 1.5 * torch.randn(n, 2, generator=g, dtype=torch.float64), t


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_one_component_is_the_gaussian_closed_form(prediction: str) -> None:
    mu, s = torch.tensor([[0.3, -0.5]], dtype=torch.float64), 0.4
    x, t = points(64)
    ab = SCHEDULE.alphas_cumprod[t][:, None]
    var = ab * s**2 + 1 - ab  # Var(x_t), per coordinate
    eps = (1 - ab).sqrt() * (x - ab.sqrt() * mu) / var  # Cov(eps, x_t) / Var(x_t)
    x0 = mu + ab.sqrt() * s**2 * (x - ab.sqrt() * mu) / var
    expected = {"eps": eps, "x0": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[prediction]
    got = MixtureDenoiser(SCHEDULE, mu, s, prediction=prediction)(x, t)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_posterior_mean_is_tweedie_on_the_mixture_log_density() -> None:
    # E[x0 | x_t] = (x_t + (1 - ab) grad log p_t(x_t)) / sqrt(ab), with p_t from
    # difficulty.GaussianMixture, an independent implementation of the noised density.
    means, std = gaussian_mixture_8()
    weights = torch.tensor([0.3, 0.05, 0.1, 0.15, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64)
    stds = torch.linspace(0.05, 0.3, 8, dtype=torch.float64)
    oracle = MixtureDenoiser(SCHEDULE, means, stds, weights)
    mixture = GaussianMixture(weights, means.double(), stds**2)
    x, t = points(200, seed=1)
    got = oracle.posterior_x0(x, t)
    for i in range(len(x)):
        ab = float(SCHEDULE.alphas_cumprod[t[i]])
        xi = x[i : i + 1].clone().requires_grad_(True)
        (score,) = torch.autograd.grad(mixture.noised(ab).log_prob(xi).sum(), xi)
        expected = (xi.detach() + (1 - ab) * score) / math.sqrt(ab)
        torch.testing.assert_close(got[i : i + 1], expected, rtol=1e-7, atol=1e-9)


def test_posterior_mean_matches_integration_over_a_grid() -> None:
    means, std = gaussian_mixture_8()
    oracle = MixtureDenoiser(SCHEDULE, means, std)
    axis = torch.linspace(-1.8, 1.8, 901, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)  # x0 values, spacing 0.004 << std 0.1
    mixture = GaussianMixture.isotropic(means, std)
    prior = mixture.log_prob(grid)
    g = torch.Generator().manual_seed(2)  # x_t of the forward process, t >= 25: the posterior
    t = torch.tensor([25, 60, 150, 400, 999] * 3)  # of x0 is wider than the grid spacing
    ab = SCHEDULE.alphas_cumprod[t][:, None]
    x = ab.sqrt() * mixture.sample(len(t), g) + (1 - ab).sqrt() * torch.randn(
        len(t), 2, generator=g
    )
    got = oracle.posterior_x0(x, t)
    for i in range(len(x)):
        ab = float(SCHEDULE.alphas_cumprod[t[i]])
        log_lik = -0.5 * ((x[i] - math.sqrt(ab) * grid) ** 2).sum(1) / (1 - ab)
        w = torch.softmax(prior + log_lik, dim=0)
        torch.testing.assert_close(got[i], (w[:, None] * grid).sum(0), rtol=0, atol=2e-4)


def test_a_dirac_component_is_recovered_and_inputs_are_checked() -> None:
    m = torch.tensor([[0.7, -0.2]], dtype=torch.float64)
    x, t = points(16, seed=3)
    torch.testing.assert_close(
        MixtureDenoiser(SCHEDULE, m, 0.0).posterior_x0(x, t), m.expand(16, 2)
    )
    with pytest.raises(ValueError, match="weights"):
        MixtureDenoiser(SCHEDULE, m.repeat(2, 1), 0.1, torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="means"):
        MixtureDenoiser(SCHEDULE, torch.zeros(3), 0.1)
    with pytest.raises(ValueError, match="x_t"):
        MixtureDenoiser(SCHEDULE, m, 0.1)(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))


def test_the_optimum_has_the_lowest_risk_and_excess_is_its_distance() -> None:
    # Perturbing the posterior mean by any function of x_t raises the expected MSE by exactly
    # the mean squared perturbation: MSE - MSE* and the distance agree within Monte Carlo error.
    means, std = gaussian_mixture_8()
    oracle = MixtureDenoiser(SCHEDULE, means, std)
    data = GaussianMixture.isotropic(means, std).sample(4000, torch.Generator().manual_seed(4))
    ts = [5, 30, 200, 600]
    x0, t, noise = timestep_draws(data.float(), ts, 20_000, seed=5)

    def perturbed(x_t: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        return oracle(x_t, tt) + 0.2 * torch.sin(3 * x_t)

    risk = excess_risk(perturbed, oracle, SCHEDULE, x0, t, noise)
    np.testing.assert_array_equal(risk.timesteps, ts)
    assert (risk.distance > 0.005).all()
    sq_diff = []  # per-sample MSE(f) - MSE(f*), to bound the Monte Carlo error of their mean
    for value in ts:
        inside = t == value
        pair = [per_sample_loss(f, SCHEDULE, x0[inside].double(), t[inside], noise[inside].double())
                for f in (perturbed, oracle)]  # fmt: skip
        sq_diff.append(pair[0] - pair[1])
    stderr = np.array([float(d.std() / math.sqrt(len(d))) for d in sq_diff])
    assert (np.abs(risk.excess - risk.distance) < 4 * stderr).all()
    np.testing.assert_allclose(risk.excess, [float(d.mean()) for d in sq_diff], rtol=1e-5)
    assert (risk.excess > 0).all()


def test_excess_risk_matches_a_per_timestep_loop_of_the_loss() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    net = lambda x_t, t: model(x_t)  # noqa: E731
    means, std = gaussian_mixture_8()
    oracle = MixtureDenoiser(SCHEDULE, means, std, prediction="v")
    data = torch.randn(500, 2)
    x0, t, noise = timestep_draws(data, [3, 500, 990], 700, seed=6)
    risk = excess_risk(net, oracle, SCHEDULE, x0, t, noise, prediction="v", batch_size=256)
    for i, value in enumerate([3, 500, 990]):
        inside = t == value
        args = (x0[inside], t[inside], noise[inside], "v")
        with torch.no_grad():
            mse = float(per_sample_loss(net, SCHEDULE, *args).double().mean())
        best = float(per_sample_loss(oracle, SCHEDULE, *args).double().mean())
        assert risk.mse[i] == pytest.approx(mse, rel=1e-5)
        assert risk.optimal_mse[i] == pytest.approx(best, rel=1e-5)


def test_timestep_draws_are_fixed_by_the_seed_and_timestep_major() -> None:
    data = torch.arange(20.0).reshape(10, 2)
    x0, t, noise = timestep_draws(data, [7, 3], 5, seed=9)
    assert x0.shape == noise.shape == (10, 2) and t.tolist() == [7] * 5 + [3] * 5
    again = timestep_draws(data, [7, 3], 5, seed=9)
    assert all(torch.equal(a, b) for a, b in zip((x0, t, noise), again, strict=True))
    other = timestep_draws(data, [7, 3], 5, seed=10)
    assert not torch.equal(noise, other[2])
    assert all(any(torch.equal(row, d) for d in data) for row in x0)
