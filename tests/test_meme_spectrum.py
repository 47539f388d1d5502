"""Frequency measurements against spectra known in closed form: a 2-D cosine, white noise,
Parseval, linear filters with an analytic transfer function, an oracle denoiser."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_diffusion.diffusion import make_schedule
from mtl_diffusion.meme import (
    MixedBlock,
    correction_spectrum,
    frequency_response,
    radial_bins,
    radial_power_spectrum,
)

N = 16


def cosine(a: int, b: int, n: int = N) -> torch.Tensor:
    m = torch.arange(n, dtype=torch.float64)
    return torch.cos(2 * math.pi * (a * m[:, None] + b * m[None, :]) / n)


@pytest.mark.parametrize("a, b", [(3, 4), (0, 2), (5, 0), (1, 1), (8, 0)])
def test_a_cosine_puts_all_its_power_in_one_radial_bin(a: int, b: int) -> None:
    spectrum = radial_power_spectrum(cosine(a, b)[None, None])
    power = spectrum.power * spectrum.counts  # summed per bin
    radius = round(math.hypot(a, b))
    assert float(power[radius]) == pytest.approx(float((cosine(a, b) ** 2).sum()))
    others = torch.cat([power[:radius], power[radius + 1 :]])
    assert float(others.abs().max()) < 1e-20


def test_bins_count_every_frequency_once() -> None:
    bins = radial_bins(N)
    assert int(bins[0, 0]) == 0 and int(bins[3, -4]) == 5  # (3, -4): radius 5
    counts = radial_power_spectrum(torch.zeros(1, N, N)).counts
    assert (
        int(counts.sum()) == N * N and int(counts[0]) == 1 and int(counts[1]) == 8
    )  # radii 1 and sqrt 2


def test_white_noise_has_a_flat_spectrum_at_its_variance() -> None:
    gen = torch.Generator().manual_seed(0)
    x = 0.5 * torch.randn(400, 1, N, N, generator=gen)  # variance 0.25
    spectrum = radial_power_spectrum(x)
    for power, count in zip(spectrum.power, spectrum.counts, strict=True):
        draws = 400 * int(count)  # |X_k|^2 / s^2: exponential (chi-square/2) per frequency
        assert abs(float(power) - 0.25) < 0.25 * 5 / math.sqrt(draws) + 0.25 * 0.02


def test_parseval_total_power_is_the_energy() -> None:
    x = torch.randn(3, 2, N, N, generator=torch.Generator().manual_seed(1))
    spectrum = radial_power_spectrum(x)
    total = float((spectrum.power * spectrum.counts).sum())
    assert total == pytest.approx(float((x.double() ** 2).sum(dim=(-1, -2)).mean()))


def test_non_square_images_are_refused() -> None:
    with pytest.raises(ValueError, match="square"):
        radial_power_spectrum(torch.zeros(1, 8, 6))


def box_blur(x: torch.Tensor) -> torch.Tensor:
    """Circular 3 x 3 mean filter."""
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return sum(torch.roll(x, s, dims=(-2, -1)) for s in shifts) / 9


def band_mean(values: torch.Tensor) -> torch.Tensor:
    bins = radial_bins(N).flatten()
    sums = torch.zeros(int(bins.max()) + 1, dtype=torch.float64).index_add_(
        0, bins, values.flatten()
    )
    return sums / torch.bincount(bins)


def test_frequency_response_of_linear_filters() -> None:
    gen = torch.Generator().manual_seed(2)
    shape = (64, 2, N, N)
    identity = frequency_response(lambda x: x, shape, generator=gen).power
    torch.testing.assert_close(identity, torch.ones_like(identity))
    doubled = frequency_response(lambda x: 2 * x, shape, generator=gen).power
    torch.testing.assert_close(doubled, torch.full_like(doubled, 4.0))
    # |H(ky, kx)|^2 of the box blur: ((1 + 2 cos(2 pi ky / N)) (1 + 2 cos(2 pi kx / N)) / 9)^2
    k = torch.fft.fftfreq(N, dtype=torch.float64) * 2 * math.pi
    h = (1 + 2 * torch.cos(k))[:, None] * (1 + 2 * torch.cos(k))[None, :] / 9
    expected = band_mean(h**2)
    blur = frequency_response(box_blur, shape, num_batches=8, generator=gen).power
    assert torch.allclose(blur, expected, atol=0.03)
    assert blur[1] > 0.8 and blur[-3] < 0.1  # low-pass


def test_pooled_attention_is_more_low_pass_than_convolution() -> None:
    """The paper's claim for the two mixers, at random initialisation: the attention branch's
    high-band / low-band power ratio is far below the convolution branch's."""
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(3)
    ratios = {}
    for name, ratio in (("conv", 0.0), ("attention", 1.0)):
        block = MixedBlock(8, ratio, num_heads=2, pool=2, num_groups=4, zero_init=False)
        power = frequency_response(lambda x, b=block: b(x) - x, (16, 8, N, N), generator=gen).power
        ratios[name] = float(power[N // 2 :].mean() / power[1:3].mean())
    assert ratios["attention"] < 0.2 * ratios["conv"]


def test_correction_spectrum_of_an_oracle_denoiser() -> None:
    """x0 = 0: x_t = sigma_t eps and the oracle predicts eps exactly, so x0_hat = 0, the
    correction is x_t (flat at 1 - alpha_bar_t) and the predicted noise is flat at 1."""
    schedule = make_schedule("linear", 100)
    sigma = (1 - schedule.alphas_cumprod).sqrt()

    def oracle(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x_t / sigma[t].to(x_t.dtype).view(-1, 1, 1, 1)

    x0 = torch.zeros(200, 1, N, N, dtype=torch.float64)
    steps = [0, 50, 99]
    gen = torch.Generator().manual_seed(4)
    corr = correction_spectrum(oracle, schedule, x0, steps, generator=gen)
    gen = torch.Generator().manual_seed(4)
    noise = correction_spectrum(oracle, schedule, x0, steps, what="noise", generator=gen)
    assert corr.power.shape == (3, len(corr.frequency))
    for row, step in zip(corr.power[:, 1:], steps, strict=True):  # bin 0: one frequency only
        level = float(1 - schedule.alphas_cumprod[step])
        assert torch.allclose(row, torch.full_like(row, level), rtol=0.2)
    torch.testing.assert_close(corr.power / corr.power[:, 1:].mean(1, keepdim=True),
                               noise.power / noise.power[:, 1:].mean(1, keepdim=True))  # fmt: skip
    with pytest.raises(ValueError, match="what"):
        correction_spectrum(oracle, schedule, x0, steps, what="x0")


def test_removed_and_input_spectra_of_an_oracle_denoiser() -> None:
    """x0 = a cosine in band 3: x_t = sqrt(ab) x0 + sigma eps; an oracle that knows x0 predicts
    eps exactly, so what it removes, sigma eps, is white at 1 - ab in every band, while the
    input adds the cosine's power ab * N^2 / 2 / (frequencies in band 3) to band 3."""
    n, schedule = 8, make_schedule("linear", 100)
    m = torch.arange(n, dtype=torch.float64)
    image = torch.cos(2 * math.pi * 3 * m[:, None] / n).expand(n, n)
    x0 = image.expand(400, 1, n, n).clone()
    ab = schedule.alphas_cumprod

    def oracle(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return schedule.eps_from_x0(x_t, t, x0[: len(x_t)])

    steps = [10, 60]
    spectra = {
        what: correction_spectrum(oracle, schedule, x0, steps, what=what,
                                  generator=torch.Generator().manual_seed(7))
        for what in ("removed", "input")
    }  # fmt: skip
    counts = spectra["input"].counts.double()
    for i, step in enumerate(steps):
        level = float(1 - ab[step])
        removed = spectra["removed"].power[i]
        assert torch.allclose(removed[1:], torch.full_like(removed[1:], level), rtol=0.25)
        extra = spectra["input"].power[i] - removed
        expected = float(ab[step]) * n * n / 2 / counts[3]  # the cosine's power, spread over band 3
        assert math.isclose(float(extra[3]), expected, rel_tol=0.1)
        others = torch.cat([extra[:3], extra[4:]])
        assert float(others.abs().max()) < 0.1 * expected
