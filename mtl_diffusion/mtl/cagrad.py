"""CAGrad (Liu et al. 2021, "Conflict-Averse Gradient Descent"), in Gramian terms."""

from __future__ import annotations

import numpy as np
import torch

from mtl_diffusion.mtl.gramian import gramian_array, unit_scale, weights_like
from mtl_diffusion.mtl.simplex import minimize_on_simplex


def cagrad_weights(
    gramian: torch.Tensor, c: float = 0.4, rescale: bool = False, tol: float = 1e-12
) -> torch.Tensor:
    """Weights w' with sum_i w'_i g_i = g0 + c ||g0|| g_w / ||g_w||.

    g0 is the mean gradient and w minimises g_w . g0 + c ||g0|| ||g_w|| over the simplex, where
    g_w = sum_i w_i g_i; so w' = 1/k + c ||g0|| w / ||g_w||. Conventions: g0 = 0 gives w' = 1/k
    (the update g0 = 0); a minimiser with g_w = 0 (the origin is the best point of the hull) adds
    no conflict-averse term. `rescale=True` divides w' by 1 + c^2, as the authors' code does by
    default. G is scaled by 1 / max_i G_ii inside (the result does not change).
    """
    if not c >= 0:
        raise ValueError(f"c must be >= 0, got {c}")
    g = unit_scale(gramian_array(gramian))
    k = g.shape[0]
    mean = np.full(k, 1.0 / k)
    g0_norm = float(np.sqrt(max(mean @ g @ mean, 0.0)))
    radius = c * g0_norm
    weights = mean.copy()
    if radius > 0:
        b = g @ mean

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            gw = g @ w
            norm = np.sqrt(max(float(w @ gw), 0.0))
            grad = b + (radius / norm) * gw if norm > 0 else b
            return float(b @ w) + radius * norm, grad

        def hessian(w: np.ndarray) -> np.ndarray:
            gw = g @ w
            norm = np.sqrt(max(float(w @ gw), 1e-300))
            return (radius / norm) * (g - np.outer(gw, gw) / norm**2)

        w = minimize_on_simplex(objective, hessian, k, tol=tol * g0_norm)
        gw_norm = np.sqrt(max(float(w @ g @ w), 0.0))
        if gw_norm > 1e-9 * g0_norm:
            weights = weights + (radius / gw_norm) * w
    if rescale:
        weights = weights / (1.0 + c * c)
    return weights_like(weights, gramian)
