"""Frequency measurements: radially averaged power spectra and per-band power ratios.

For a square N x N image the orthonormal 2-D DFT X[ky, kx] (``norm="ortho"``: Parseval holds,
sum |X|^2 = sum x^2) is binned by radius: frequency (ky, kx), with ky, kx in -N/2..N/2 - 1
cycles per image, falls in bin ``round(sqrt(ky^2 + kx^2))``. The spectrum of a batch is the
mean of |X|^2 over the frequencies of each bin, over images and channels: white noise of
variance s^2 gives s^2 in every bin, and cos(2 pi (a m + b n) / N) puts all its power in bin
round(sqrt(a^2 + b^2)).

- :func:`radial_power_spectrum`: the spectrum of an image batch;
- :func:`correction_spectrum`: what a denoiser removes at each t, the spectrum of
  x_t - x0_hat, or of the part of x_t it calls noise, sqrt(1 - alpha_bar_t) eps_hat (or of its
  predicted noise, or of its input x_t: the ratio of the second to the last per band is the
  fraction of the input's power the denoiser takes away);
- :func:`frequency_response`: output-to-input power per band of a map (a block) on white
  noise: below 1 where it attenuates, so a decreasing response is low-pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from mtl_diffusion.diffusion import Model, Schedule, check_prediction

WHAT = ("correction", "removed", "noise", "input")


class RadialSpectrum(NamedTuple):
    """``frequency``: (R,) bin radii in cycles per image (0..R-1; divide by N for cycles per
    pixel); ``power``: (..., R) per bin; ``counts``: (R,) frequencies per bin."""

    frequency: Tensor
    power: Tensor
    counts: Tensor


def radial_bins(size: int) -> Tensor:
    """(size, size) long: the radial bin of every DFT frequency of a size x size image."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    k = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64)  # integer cycles per image
    radius = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    return torch.round(radius).long()


def _band_sums(power: Tensor, bins: Tensor) -> tuple[Tensor, Tensor]:
    """(..., N, N) power -> (..., R) summed per bin, and the (R,) counts."""
    flat = bins.flatten().to(power.device)
    count = torch.bincount(flat)
    sums = power.new_zeros((*power.shape[:-2], len(count)))
    sums.index_add_(-1, flat, power.flatten(-2))
    return sums, count


def _power(images: Tensor) -> Tensor:
    if images.dim() < 2 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images must be (..., N, N) square, got {tuple(images.shape)}")
    return torch.fft.fft2(images.double(), norm="ortho").abs() ** 2


def radial_power_spectrum(images: Tensor) -> RadialSpectrum:
    """The radially averaged power spectrum of (..., N, N) images, averaged over all leading
    dimensions (batch, channels), float64."""
    power = _power(images)
    bins = radial_bins(images.shape[-1])
    sums, count = _band_sums(power.reshape(-1, *power.shape[-2:]).mean(0), bins)
    frequency = torch.arange(len(count), dtype=torch.float64, device=sums.device)
    return RadialSpectrum(frequency, sums / count.to(sums), count)


@torch.no_grad()
def correction_spectrum(
    denoiser: Model,
    schedule: Schedule,
    x0: Tensor,
    timesteps: Sequence[int],
    *,
    prediction: str = "eps",
    what: str = "correction",
    generator: torch.Generator | None = None,
) -> RadialSpectrum:
    """For each t in ``timesteps``: the spectrum of what the denoiser removes from x_t.

    ``what="correction"``: x_t - x0_hat (x0_hat the denoiser's clean estimate);
    ``"removed"``: the part of x_t the denoiser attributes to noise, sqrt(1 - alpha_bar_t)
    eps_hat = x_t - sqrt(alpha_bar_t) x0_hat (bounded where x0_hat's error is amplified by
    1 / sqrt(alpha_bar_t) at high t); ``"noise"``: its predicted noise eps_hat; ``"input"``:
    x_t itself (the denoiser is not called). One noise draw (from ``generator``, on the CPU) is
    shared by every t, so the rows differ by t alone. ``power`` is (len(timesteps), R).
    """
    check_prediction(prediction)
    if what not in WHAT:
        raise ValueError(f"what must be one of {WHAT}, got {what!r}")
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    rows = []
    for step in timesteps:
        t = torch.full((len(x0),), int(step), dtype=torch.long, device=x0.device)
        x_t = schedule.q_sample(x0, t, noise)
        if what == "input":
            rows.append(radial_power_spectrum(x_t))
            continue
        eps, x0_hat = schedule.model_output_to_eps_x0(denoiser(x_t, t), x_t, t, prediction)
        if what == "removed":
            sigma = (1 - schedule.alphas_cumprod.to(t.device)[t]).sqrt().to(eps.dtype)
            eps = eps * sigma.view(-1, *[1] * (eps.dim() - 1))
        rows.append(radial_power_spectrum(x_t - x0_hat if what == "correction" else eps))
    return RadialSpectrum(rows[0].frequency, torch.stack([r.power for r in rows]), rows[0].counts)


@torch.no_grad()
def frequency_response(
    block: Callable[[Tensor], Tensor],
    shape: Sequence[int],
    *,
    num_batches: int = 4,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> RadialSpectrum:
    """Per radial band: output power / input power of ``block`` on white Gaussian inputs of
    ``shape`` (B, C, N, N): the band's power per image and channel, summed over
    ``num_batches`` batches, output over input.

    Pass the part of a block to measure: ``lambda x: blk(x) - x`` for a residual branch.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(f"shape must be (B, C, N, N), got {shape}")
    bins = radial_bins(shape[-1])
    totals = [0.0, 0.0]
    count = None
    for _ in range(num_batches):
        x = torch.randn(shape, generator=generator).to(device)
        y = block(x)
        if y.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"block must keep the spatial size, got {tuple(y.shape)}")
        for i, value in enumerate((x, y)):
            sums, count = _band_sums(_power(value).mean(dim=(0, 1)), bins)
            totals[i] = totals[i] + sums
    assert count is not None and isinstance(totals[0], Tensor)
    frequency = torch.arange(len(count), dtype=torch.float64)
    return RadialSpectrum(frequency, (totals[1] / totals[0]).cpu(), count.cpu())
