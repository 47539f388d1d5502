"""Per-timestep loss weights: multipliers of the chosen prediction target's MSE.

Every function takes a tensor of signal-to-noise ratios SNR(t) = alpha_bar_t / (1 - alpha_bar_t)
(any shape, any floating dtype) and returns weights of the same shape and dtype. SNR = 0 (zero
terminal SNR) and SNR = inf (alpha_bar = 1) give finite weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

PREDICTIONS = ("eps", "x0", "v")


def _check_snr(snr: torch.Tensor) -> torch.Tensor:
    """SNR as a floating tensor; raises ValueError on NaN or negative entries."""
    snr = torch.as_tensor(snr)
    if not snr.is_floating_point():
        snr = snr.to(torch.get_default_dtype())
    if torch.isnan(snr).any() or (snr < 0).any():
        raise ValueError("snr must be >= 0 and not NaN (inf is allowed)")
    return snr


def constant_weight(snr: torch.Tensor) -> torch.Tensor:
    """Weight 1 everywhere (the plain, unweighted loss)."""
    return torch.ones_like(_check_snr(snr))


def min_snr_weight(snr: torch.Tensor, gamma: float = 5.0, prediction: str = "eps") -> torch.Tensor:
    """Min-SNR-gamma (Hang et al. 2023) multiplier of the `prediction` target's MSE.

    x0: min(SNR, gamma); eps: min(SNR, gamma) / SNR; v: min(SNR, gamma) / (SNR + 1). All three
    give the same effective loss min(SNR, gamma) * ||x0 - x0_hat||^2. For eps the weight is written
    gamma / max(SNR, gamma), which equals the formula for SNR > 0 and its limit 1 at SNR = 0.
    """
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    snr = _check_snr(snr)
    if prediction == "x0":
        return snr.clamp(max=gamma)
    if prediction == "eps":
        return gamma / snr.clamp(min=gamma)
    if prediction == "v":
        return snr.clamp(max=gamma) / (snr + 1)
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def p2_weight(snr: torch.Tensor, gamma: float = 1.0, k: float = 1.0) -> torch.Tensor:
    """P2 weighting (Choi et al. 2022): eps-MSE multiplier 1 / (k + SNR)^gamma, unnormalised."""
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if not k > 0:
        raise ValueError(f"k must be > 0 (k = 0 gives an infinite weight at SNR = 0), got {k}")
    return (k + _check_snr(snr)) ** (-gamma)


WEIGHTS: dict[str, Callable[..., torch.Tensor]] = {
    "constant": constant_weight,
    "min_snr": min_snr_weight,
    "p2": p2_weight,
}


def loss_weight(name: str, snr: torch.Tensor, **kwargs) -> torch.Tensor:
    """Dispatch to the weighting called `name` (one of WEIGHTS) with its keyword options."""
    if name not in WEIGHTS:
        raise ValueError(f"name must be one of {sorted(WEIGHTS)}, got {name!r}")
    return WEIGHTS[name](snr, **kwargs)
