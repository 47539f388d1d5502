"""CAGrad (Liu et al. 2021, "Conflict-Averse Gradient Descent"), in Gramian terms.

The dual min over the simplex of f(w) = b . w + r ||g_w|| (b = G mean, r = c ||g0||) is solved
exactly for k <= MAX_ENUMERATED_TASKS: on each support S, the KKT conditions
b_S + r G_SS v = lambda 1 with v = w / ||g_w|| and v^T G_SS v = 1 give lambda from a quadratic
and f = lambda, so the valid support with the smallest root is the minimiser (f is convex).
This stays exact where the gradients' norms differ by orders of magnitude (high vs low noise),
where first-order solvers stall. Larger k, or a minimiser with g_w = 0, use the simplex solver.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import torch

from mtl_diffusion.mtl.gramian import gramian_array, unit_scale, weights_like
from mtl_diffusion.mtl.simplex import minimize_on_simplex

MAX_ENUMERATED_TASKS = 10  # 2^k - 1 supports, each a k x k Cholesky: ~1 ms at k = 5


def _kkt_minimiser(g: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray | None:
    """argmin over the simplex of b . w + radius ||g_w|| at a point with g_w != 0, by
    enumerating supports (see module doc); None when no support satisfies the KKT conditions."""
    k = len(b)
    slack = 1e-9 * (np.abs(b).max() + radius * np.sqrt(np.diag(g).max()))
    best: tuple[float, np.ndarray] | None = None
    for size in range(1, k + 1):
        for support in combinations(range(k), size):
            idx = list(support)
            try:
                chol = np.linalg.cholesky(g[np.ix_(idx, idx)])
            except np.linalg.LinAlgError:
                continue
            a1 = np.linalg.solve(chol.T, np.linalg.solve(chol, np.ones(size)))
            ab = np.linalg.solve(chol.T, np.linalg.solve(chol, b[idx]))
            quad, half, const = a1.sum(), ab.sum(), b[idx] @ ab - radius**2
            disc = half * half - quad * const
            if disc < 0 or quad <= 0:
                continue
            for lam in ((half - np.sqrt(disc)) / quad, (half + np.sqrt(disc)) / quad):
                v = np.zeros(k)
                v[idx] = (lam * a1 - ab) / radius
                if (v[idx] <= 0).any():
                    continue
                gradient = b + radius * (g @ v)
                if (np.delete(gradient, idx) < lam - slack).any():
                    continue
                if best is None or lam < best[0]:
                    best = (lam, v / v.sum())
    return None if best is None else best[1]


def cagrad_weights(
    gramian: torch.Tensor, c: float = 0.4, rescale: bool = False, tol: float = 1e-10
) -> torch.Tensor:
    """Weights w' with sum_i w'_i g_i = g0 + c ||g0|| g_w / ||g_w||.

    g0 is the mean gradient and w minimises g_w . g0 + c ||g0|| ||g_w|| over the simplex, where
    g_w = sum_i w_i g_i; so w' = 1/k + c ||g0|| w / ||g_w||. Conventions: g0 = 0 gives w' = 1/k
    (the update g0 = 0); a minimiser with g_w = 0 (the origin is the best point of the hull) adds
    no conflict-averse term. `rescale=True` divides w' by 1 + c^2, as the authors' code does by
    default. G is scaled by 1 / max_i G_ii inside (the result does not change). `tol` bounds
    the simplex solver's duality gap relative to ||g0|| (used for k > MAX_ENUMERATED_TASKS or a
    minimiser with g_w = 0).
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

        w = _kkt_minimiser(g, b, radius) if k <= MAX_ENUMERATED_TASKS else None
        if w is None:
            w = minimize_on_simplex(objective, hessian, k, tol=tol * g0_norm)
        gw_norm = np.sqrt(max(float(w @ g @ w), 0.0))
        if gw_norm > 1e-9 * g0_norm:
            weights = weights + (radius / gw_norm) * w
    if rescale:
        weights = weights / (1.0 + c * c)
    return weights_like(weights, gramian)
