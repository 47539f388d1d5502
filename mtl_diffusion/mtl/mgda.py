"""MGDA (Desideri 2012; Sener & Koltun 2018): the min-norm point of the gradients' convex hull."""

from __future__ import annotations

import numpy as np
import torch

from mtl_diffusion.mtl.gramian import gramian_array, unit_scale, weights_like
from mtl_diffusion.mtl.simplex import minimize_on_simplex


def mgda_weights(gramian: torch.Tensor, tol: float = 1e-12) -> torch.Tensor:
    """Weights w on the simplex minimising ||sum_i w_i g_i||^2 = w^T G w.

    Solved on G / max_i G_ii (same minimiser); `tol` bounds the suboptimality of w^T G w relative
    to the largest squared gradient norm.
    """
    g = unit_scale(gramian_array(gramian))

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        gw = g @ w
        return float(w @ gw), 2.0 * gw

    lipschitz = max(2.0 * float(np.linalg.eigvalsh(g)[-1]), 1e-12)
    w = minimize_on_simplex(objective, lambda w: 2.0 * g, g.shape[0], tol=tol, lipschitz=lipschitz)
    return weights_like(w, gramian)
