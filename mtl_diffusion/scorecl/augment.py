"""Digit augmentations with one controllable strength per type (torch ops, seeded).

Every augmentation takes images (B, C, H, W) in [-1, 1] (background -1), a strength in [0, 1]
and a torch.Generator. Each image draws its own magnitude uniformly in [0, strength] times the
type's maximum (below), so a batch mixes mild and strong views, and the expected change grows
with the strength. Strength 0 returns the input unchanged. No clamping: outputs may leave
[-1, 1] (additive noise, contrast).

    views = augment(x, {"affine": 1.0, "noise": 0.3}, generator)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_ROTATION_DEG = 30.0  # affine: rotation in [-30, 30] degrees at strength 1
MAX_SCALE = 0.25  # affine: zoom factor in [0.75, 1.25]
MAX_SHIFT_PX = 2.0  # affine: shift in [-2, 2] pixels per axis
MAX_NOISE_STD = 0.5  # noise: additive Gaussian std (the data range is 2)
MAX_ERASE_SIDE = 0.6  # erase: side of the mid-grey square, as a fraction of the image side
MAX_BLUR_SIGMA = 1.2  # blur: Gaussian std in pixels (kernel radius 2)
MAX_CONTRAST = 0.6  # contrast: factor in [0.4, 1.6] around the image mean
MAX_BRIGHTNESS = 0.4  # contrast: added offset in [-0.4, 0.4]
BLUR_RADIUS = 2


def _magnitude(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Per-image magnitude in [0, strength], shape (B,)."""
    return strength * torch.rand(len(x), generator=generator, dtype=x.dtype)


def _signed(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Per-image signed magnitude in [-strength, strength], shape (B,)."""
    return strength * (2 * torch.rand(len(x), generator=generator, dtype=x.dtype) - 1)


def random_affine(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Random rotation, zoom and shift (bilinear; pixels from outside the image are background)."""
    angle = _signed(x, strength, generator) * math.radians(MAX_ROTATION_DEG)
    zoom = 1 + _signed(x, strength, generator) * MAX_SCALE
    shift = torch.stack([_signed(x, strength, generator) for _ in range(2)], dim=1)
    shift = shift * MAX_SHIFT_PX * 2 / torch.tensor([x.shape[3], x.shape[2]], dtype=x.dtype)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )  # maps output coordinates to input coordinates
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    moved = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved - 1  # zero padding of x + 1 is background -1


def random_noise(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Additive Gaussian noise of per-image std in [0, strength * MAX_NOISE_STD]."""
    std = _magnitude(x, strength, generator) * MAX_NOISE_STD
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x + std.view(-1, 1, 1, 1) * noise


def random_erase(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Cutout: a mid-grey (0) square of side up to strength * MAX_ERASE_SIDE of the image,
    centred uniformly at random; a pixel is erased when its centre lies inside the square."""
    height, width = x.shape[2:]
    side = _magnitude(x, strength, generator) * MAX_ERASE_SIDE * min(height, width)
    centre = torch.rand(len(x), 2, generator=generator, dtype=x.dtype)
    centre = centre * torch.tensor([height, width], dtype=x.dtype)
    rows = torch.arange(height, dtype=x.dtype) + 0.5
    cols = torch.arange(width, dtype=x.dtype) + 0.5
    half = (side / 2).view(-1, 1)
    inside_r = (rows.view(1, -1) - centre[:, :1]).abs() < half  # (B, H)
    inside_c = (cols.view(1, -1) - centre[:, 1:]).abs() < half  # (B, W)
    mask = (inside_r[:, :, None] & inside_c[:, None, :]).unsqueeze(1)
    return torch.where(mask, torch.zeros_like(x), x)


def random_blur(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Separable Gaussian blur of per-image std up to strength * MAX_BLUR_SIGMA pixels
    (the image is padded with background)."""
    sigma = (_magnitude(x, strength, generator) * MAX_BLUR_SIGMA).clamp_min(1e-6)
    offsets = torch.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, dtype=x.dtype)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, K); a delta when sigma -> 0
    b, c, h, w = x.shape
    flat = (x + 1).reshape(1, b * c, h, w)
    weight = kernel.repeat_interleave(c, dim=0)  # one kernel per (image, channel)
    flat = F.conv2d(flat, weight.view(b * c, 1, -1, 1), padding=(BLUR_RADIUS, 0), groups=b * c)
    flat = F.conv2d(flat, weight.view(b * c, 1, 1, -1), padding=(0, BLUR_RADIUS), groups=b * c)
    return flat.view(b, c, h, w) - 1


def random_contrast(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Intensity: contrast factor 1 +- strength * MAX_CONTRAST around each image's mean, then an
    offset of +- strength * MAX_BRIGHTNESS."""
    factor = 1 + _signed(x, strength, generator) * MAX_CONTRAST
    offset = _signed(x, strength, generator) * MAX_BRIGHTNESS
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return factor.view(-1, 1, 1, 1) * (x - mean) + mean + offset.view(-1, 1, 1, 1)


AUGMENTATIONS: dict[str, Callable[[Tensor, float, torch.Generator], Tensor]] = {
    "affine": random_affine,
    "erase": random_erase,
    "blur": random_blur,
    "contrast": random_contrast,
    "noise": random_noise,
}  # also the order in which `augment` applies them


def check_strengths(strengths: Mapping[str, float]) -> None:
    """Raise ValueError for an unknown type or a strength outside [0, 1]."""
    for name, strength in strengths.items():
        if name not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {list(AUGMENTATIONS)}, got {name!r}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength of {name!r} must lie in [0, 1], got {strength}")


def augment(x: Tensor, strengths: Mapping[str, float], generator: torch.Generator) -> Tensor:
    """Apply every augmentation named in `strengths` (type -> strength in [0, 1]) in the fixed
    order of AUGMENTATIONS; types left out or at strength 0 are skipped."""
    check_strengths(strengths)
    if x.dim() != 4:
        raise ValueError(f"x must be images (B, C, H, W), got shape {tuple(x.shape)}")
    for name, fn in AUGMENTATIONS.items():
        strength = float(strengths.get(name, 0.0))
        if strength > 0:
            x = fn(x, strength, generator)
    return x
