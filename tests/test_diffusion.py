"""Schedules, forward process, conversions, losses and samplers against closed-form references."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from mtl_diffusion.diffusion import Schedule, make_schedule, per_sample_loss
from mtl_diffusion.sampling import ddim_sample, ddim_timesteps, ddpm_sample, piecewise_denoiser

PREDICTIONS = ["eps", "x0", "v"]


def _abar(schedule: Schedule, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """alpha_bar_t shaped (B, 1, ..., 1), float64."""
    return schedule.alphas_cumprod[t].view((-1,) + (1,) * (ndim - 1))


# --- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1000, 100])
def test_linear_betas_match_closed_form(T: int) -> None:
    schedule = make_schedule("linear", T)
    lo, hi = 1e-4 * 1000 / T, 0.02 * 1000 / T
    expected = [lo + i * (hi - lo) / (T - 1) for i in range(T)]
    assert schedule.T == T
    assert schedule.betas.dtype == torch.float64
    torch.testing.assert_close(schedule.betas, torch.tensor(expected, dtype=torch.float64))
    product = math.prod(1 - b for b in expected)
    assert schedule.alphas_cumprod[-1].item() == pytest.approx(product, rel=1e-9)


def test_cosine_alphas_cumprod_match_closed_form() -> None:
    T, s = 1000, 0.008
    schedule = make_schedule("cosine", T)

    def f(step: float) -> float:
        return math.cos((step / T + s) / (1 + s) * math.pi / 2) ** 2

    unclipped = int((schedule.betas < 0.999).sum())
    assert unclipped >= T - 5  # clipping only touches the very last steps
    expected = [f(t + 1) / f(0) for t in range(unclipped)]
    torch.testing.assert_close(
        schedule.alphas_cumprod[:unclipped], torch.tensor(expected, dtype=torch.float64)
    )
    assert schedule.betas.max().item() <= 0.999


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("T", [50, 1000])
def test_alpha_bar_and_snr_decrease(name: str, T: int) -> None:
    schedule = make_schedule(name, T)
    ab, snr = schedule.alphas_cumprod, schedule.snr()
    assert ((ab > 0) & (ab < 1)).all()
    assert (ab.diff() < 0).all()
    assert (snr.diff() < 0).all()
    torch.testing.assert_close(snr, ab / (1 - ab))
    torch.testing.assert_close(schedule.log_snr(), torch.log(snr))
    t = torch.tensor([0, T // 2, T - 1])
    torch.testing.assert_close(schedule.log_snr(t), torch.log(snr[t]))


def test_bad_schedule_arguments_raise() -> None:
    with pytest.raises(ValueError, match="linear.*cosine"):
        make_schedule("quadratic")
    with pytest.raises(ValueError, match="T"):
        make_schedule("cosine", T=1)
    with pytest.raises(ValueError, match="T > 20"):
        make_schedule("linear", T=20)  # its last beta would be 1


# --- forward process and conversions -----------------------------------------------------------


@pytest.mark.parametrize("step", [0, 500, 999])
def test_forward_process_statistics(step: int) -> None:
    schedule = make_schedule("linear", 1000)
    n, c = 20_000, 0.7
    x0 = torch.full((n, 1, 2, 2), c, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.full((n,), step)
    x_t = schedule.q_sample(x0, t, noise)
    ab = schedule.alphas_cumprod[step].item()
    mean, var = x_t.mean(dim=0), x_t.var(dim=0)
    # five standard errors of the sample mean and variance of N(sqrt(ab) c, 1 - ab)
    assert (mean - math.sqrt(ab) * c).abs().max() < 5 * math.sqrt((1 - ab) / n)
    assert (var - (1 - ab)).abs().max() < 5 * (1 - ab) * math.sqrt(2 / (n - 1))


def test_q_sample_keeps_dtype_and_broadcasts_per_sample() -> None:
    schedule = make_schedule("cosine", 100)
    x0, noise = torch.randn(3, 2), torch.randn(3, 2)
    t = torch.tensor([0, 40, 99])
    x_t = schedule.q_sample(x0, t, noise)
    assert x_t.dtype == torch.float32
    for i in range(3):
        ab = schedule.alphas_cumprod[t[i]].item()
        expected = math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i]
        torch.testing.assert_close(x_t[i], expected)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_conversions_round_trip(prediction: str) -> None:
    schedule = make_schedule("cosine", 1000)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(6, 3, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 1, 250, 500, 900, 998])
    ab = _abar(schedule, t, x0.ndim)
    by_hand = {"eps": noise, "x0": x0, "v": ab.sqrt() * noise - (1 - ab).sqrt() * x0}
    target = schedule.target(x0, noise, t, prediction)
    torch.testing.assert_close(target, by_hand[prediction])
    x_t = schedule.q_sample(x0, t, noise)
    eps, x0_back = schedule.model_output_to_eps_x0(target, x_t, t, prediction)
    torch.testing.assert_close(eps, noise)
    torch.testing.assert_close(x0_back, x0)


def test_eps_x0_helpers_invert_each_other() -> None:
    schedule = make_schedule("linear", 100)
    x0, noise = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    t = torch.tensor([0, 10, 50, 99])
    x_t = schedule.q_sample(x0, t, noise)
    torch.testing.assert_close(schedule.eps_from_x0(x_t, t, x0), noise)
    torch.testing.assert_close(schedule.x0_from_eps(x_t, t, noise), x0)


def test_bad_timesteps_and_prediction_raise() -> None:
    schedule = make_schedule("linear", 100)
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="integer"):
        schedule.q_sample(x0, torch.tensor([0.5, 1.0]), x0)
    with pytest.raises(ValueError, match=r"\[0, 99\]"):
        schedule.q_sample(x0, torch.tensor([0, 100]), x0)
    with pytest.raises(ValueError, match="shape"):
        schedule.q_sample(x0, torch.tensor([0, 1, 2]), x0)
    with pytest.raises(ValueError, match="eps.*x0.*v"):
        schedule.target(x0, x0, torch.tensor([0, 1]), "score")
    with pytest.raises(ValueError, match="eps.*x0.*v"):
        schedule.model_output_to_eps_x0(x0, x0, torch.tensor([0, 1]), "score")
    with pytest.raises(ValueError, match="eps.*x0.*v"):
        ddim_sample(lambda x, t: x, schedule, x0, prediction="score")


# --- per-sample loss ---------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_oracle_model_has_zero_loss(prediction: str) -> None:
    schedule = make_schedule("linear", 1000)
    gen = torch.Generator().manual_seed(2)
    x0 = torch.rand(5, 1, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    t = torch.randint(0, 1000, (5,), generator=gen)
    ab = _abar(schedule, t, x0.ndim)
    oracle = {"eps": noise, "x0": x0, "v": ab.sqrt() * noise - (1 - ab).sqrt() * x0}[prediction]

    def model(x_t: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        assert steps.dtype == torch.long and steps.shape == (5,)
        torch.testing.assert_close(x_t, ab.sqrt() * x0 + (1 - ab).sqrt() * noise)
        return oracle

    loss = per_sample_loss(model, schedule, x0, t, noise, prediction)
    assert loss.shape == (5,)
    assert loss.max().item() < 1e-10


def test_loss_is_mean_square_over_non_batch_dims() -> None:
    schedule = make_schedule("linear", 100)
    x0, noise = torch.randn(3, 2, 5), torch.randn(3, 2, 5)
    loss = per_sample_loss(
        lambda x, t: torch.zeros_like(x), schedule, x0, torch.tensor([1, 2, 3]), noise
    )
    torch.testing.assert_close(loss, torch.stack([(n**2).sum() / 10 for n in noise]))
    with pytest.raises(ValueError, match="model output"):
        per_sample_loss(lambda x, t: x[:, :1], schedule, x0, torch.tensor([1, 2, 3]), noise)


# --- samplers ----------------------------------------------------------------------------------


def gaussian_denoiser(schedule: Schedule, mu: torch.Tensor, s: torch.Tensor, prediction: str):
    """Exact denoiser for data ~ N(mu, diag(s^2)): E[eps | x_t] etc. in closed form."""

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.dtype == torch.long and t.shape == x_t.shape[:1]
        ab = _abar(schedule, t, x_t.ndim).to(x_t.dtype)
        centred = x_t - ab.sqrt() * mu
        var = ab * s**2 + 1 - ab  # Var(x_t)
        eps = (1 - ab).sqrt() * centred / var  # Cov(eps, x_t) = sqrt(1 - ab)
        x0 = mu + ab.sqrt() * s**2 * centred / var  # Cov(x0, x_t) = sqrt(ab) s^2
        return {"eps": eps, "x0": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[prediction]

    return denoise


MU, STD = torch.tensor([0.3, -0.5]), torch.tensor([0.5, 0.2])


@pytest.mark.parametrize(
    ("sampler", "name", "prediction"),
    [
        ("ddpm", "linear", "eps"),
        ("ddpm", "linear", "x0"),
        ("ddpm", "cosine", "v"),
        ("ddim", "linear", "eps"),
        ("ddim", "cosine", "x0"),
        ("ddim", "cosine", "v"),
        ("ddim_eta1", "linear", "eps"),
    ],
)
def test_samplers_recover_gaussian_data(sampler: str, name: str, prediction: str) -> None:
    # With the exact denoiser only the discretisation shrinks the spread: about 0.03 in std
    # at T = 100 for these settings (DDIM eta = 1 at 50 steps would lose 0.06).
    schedule = make_schedule(name, 100)
    denoise = gaussian_denoiser(schedule, MU, STD, prediction)
    noise = torch.randn(10_000, 2, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(4)
    common = {"prediction": prediction, "generator": gen, "clip_x0": False, "progress_bar": False}
    if sampler == "ddpm":
        x = ddpm_sample(denoise, schedule, noise, **common)
    elif sampler == "ddim":
        x = ddim_sample(denoise, schedule, noise, steps=50, **common)
    else:
        x = ddim_sample(denoise, schedule, noise, steps=100, eta=1.0, **common)
    torch.testing.assert_close(x.mean(dim=0), MU, atol=0.03, rtol=0)
    torch.testing.assert_close(x.std(dim=0), STD, atol=0.05, rtol=0)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_ddim_is_the_exact_linear_map_for_gaussian_data(name: str, prediction: str) -> None:
    # For data N(mu, s^2), write w(ab) = (sqrt(ab) s, sqrt(1 - ab)): then Var(x_t) = |w|^2 and one
    # deterministic DDIM step maps x - sqrt(ab) mu to (x - sqrt(ab) mu) * w_prev . w / |w|^2.
    schedule = make_schedule(name, 100)
    steps = 7
    sequence = ddim_timesteps(100, steps)
    ab = schedule.alphas_cumprod.to(torch.float64)
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    factor = torch.ones(2, dtype=torch.float64)
    for t, prev in zip(sequence, sequence[1:] + [None], strict=True):
        a, a_prev = (
            ab[t],
            (ab[prev] if prev is not None else torch.tensor(1.0, dtype=torch.float64)),
        )
        w = torch.stack([a.sqrt() * STD, (1 - a).sqrt().expand(2)])
        w_prev = torch.stack([a_prev.sqrt() * STD, (1 - a_prev).sqrt().expand(2)])
        factor = factor * (w_prev * w).sum(0) / (w * w).sum(0)
    expected = MU + (noise - ab[-1].sqrt() * MU) * factor
    denoise = gaussian_denoiser(schedule, MU.double(), STD.double(), prediction)
    x = ddim_sample(
        denoise,
        schedule,
        noise,
        steps=steps,
        prediction=prediction,
        clip_x0=False,
        progress_bar=False,
    )
    torch.testing.assert_close(x, expected)


def test_ddim_eta1_with_all_steps_is_ddpm() -> None:
    # Two different update formulas for the same Markov chain; data partly outside [-1, 1]
    # so that clip_x0 acts.
    schedule = make_schedule("linear", 60)
    denoise = gaussian_denoiser(schedule, 3 * MU, STD, "eps")
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for clip in (False, True):
        opts = {"clip_x0": clip, "progress_bar": False}
        a = ddpm_sample(
            denoise, schedule, noise, generator=torch.Generator().manual_seed(6), **opts
        )
        b = ddim_sample(
            denoise,
            schedule,
            noise,
            steps=60,
            eta=1.0,
            generator=torch.Generator().manual_seed(6),
            **opts,
        )
        torch.testing.assert_close(a, b)


def test_sampler_randomness() -> None:
    schedule = make_schedule("linear", 50)
    denoise = gaussian_denoiser(schedule, MU, STD, "eps")
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(7))

    def ddim(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return ddim_sample(denoise, schedule, noise, steps=10, generator=gen, progress_bar=False)

    def ddpm(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return ddpm_sample(denoise, schedule, noise, generator=gen, progress_bar=False)

    assert torch.equal(ddim(0), ddim(1))
    assert torch.equal(ddpm(0), ddpm(0))
    assert not torch.equal(ddpm(0), ddpm(1))
    assert ddpm(0).abs().max() <= 1.0  # clip_x0 keeps samples in the data range


def test_ddim_timesteps() -> None:
    assert ddim_timesteps(1000, 1) == [999]
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    seq = ddim_timesteps(1000, 50)
    assert len(seq) == 50 and seq[0] == 999 and seq[-1] == 0
    gaps = [a - b for a, b in zip(seq, seq[1:], strict=False)]
    assert min(gaps) > 0 and max(gaps) - min(gaps) <= 1  # strictly decreasing, even spacing
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(10, 11)


# --- piecewise (hybrid) denoiser ---------------------------------------------------------------


def test_piecewise_with_one_denoiser_matches_plain() -> None:
    schedule = make_schedule("cosine", 40)
    denoise = gaussian_denoiser(schedule, MU, STD, "v")
    hybrid = piecewise_denoiser([(0, 9), (10, 29), (30, 39)], [denoise] * 3, T=40)
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(8))
    opts = {"prediction": "v", "progress_bar": False}
    for sample in (ddpm_sample, partial(ddim_sample, steps=20)):
        a = sample(denoise, schedule, noise, generator=torch.Generator().manual_seed(9), **opts)
        b = sample(hybrid, schedule, noise, generator=torch.Generator().manual_seed(9), **opts)
        assert torch.equal(a, b)


def test_piecewise_routes_each_sample() -> None:
    def constant(k: float):
        return lambda x, t: torch.full_like(x, k)

    hybrid = piecewise_denoiser([(0, 2), (3, 5), (6, 9)], [constant(0), constant(1), constant(2)])
    t = torch.tensor([9, 0, 3, 2, 6, 5])
    out = hybrid(torch.zeros(6, 1, 2, 2), t)
    assert out.shape == (6, 1, 2, 2)
    assert out[:, 0, 0, 0].tolist() == [2, 0, 1, 0, 2, 1]
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        hybrid(torch.zeros(1, 2), torch.tensor([10]))


@pytest.mark.parametrize(
    "intervals",
    [
        [(0, 4), (6, 9)],  # gap
        [(0, 5), (5, 9)],  # overlap
        [(1, 9)],  # does not start at 0
        [(5, 9), (0, 4)],  # out of order
        [(0, 4), (5, 8)],  # stops short of T - 1
    ],
)
def test_piecewise_rejects_bad_intervals(intervals: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError, match="interval"):
        piecewise_denoiser(intervals, [lambda x, t: x] * len(intervals), T=10)


def test_piecewise_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        piecewise_denoiser([(0, 9)], [lambda x, t: x] * 2)
