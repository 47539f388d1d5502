"""Denoisers: ``forward(x, t)`` returns a prediction shaped like x (eps, x0 or v alike)."""

from __future__ import annotations

from typing import Any

from torch import nn

from mtl_diffusion.models.dit import DiT
from mtl_diffusion.models.mlp import MLPDenoiser
from mtl_diffusion.models.unet import UNet

ARCHITECTURES: dict[str, type[nn.Module]] = {"unet": UNet, "dit": DiT, "mlp": MLPDenoiser}


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """Construct the denoiser named ``arch`` ("unet", "dit" or "mlp") from keyword arguments."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    return ARCHITECTURES[arch](**kwargs)


__all__ = ["ARCHITECTURES", "DiT", "MLPDenoiser", "UNet", "build_model"]
