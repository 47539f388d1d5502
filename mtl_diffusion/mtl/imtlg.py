"""IMTL-G (Liu et al. 2021, "Towards Impartial Multi-task Learning"), in Gramian terms.

With u_i = g_i / ||g_i||, the paper asks for d = sum_i w_i g_i, sum_i w_i = 1, with equal
projections d . u_1 = d . u_i. Writing d = g_1 - sum_{i>1} w_i D_i with D_i = g_1 - g_i and
U_i = u_1 - u_i, the conditions d . U_j = 0 read sum_{i>1} w_i (D_i . U_j) = g_1 . U_j, a
(k-1) x (k-1) linear system whose entries are inner products: with A_ij = g_i . u_j =
G_ij / ||g_j||, D_i . U_j = A_11 - A_1j - A_i1 + A_ij and g_1 . U_j = A_11 - A_1j.
"""

from __future__ import annotations

import numpy as np
import torch

from mtl_diffusion.mtl.gramian import gramian_array, task_norms, unit_scale, weights_like


def imtlg_weights(gramian: torch.Tensor, rtol: float = 1e-6) -> torch.Tensor:
    """Weights summing to 1 whose combination has the same projection d . g_i / ||g_i|| on all g_i.

    Raises ValueError when a gradient is zero, when the system is singular, or when its solution
    misses equal projections by more than `rtol` (relative to the largest ||g_i||).
    """
    g = unit_scale(gramian_array(gramian))
    norms = task_norms(g)
    k = g.shape[0]
    a = g / norms[None, :]
    rhs = a[0, 0] - a[0, 1:]
    system = (a[0, 0] - a[0, 1:])[None, :] - a[1:, :1] + a[1:, 1:]
    try:
        rest = np.linalg.solve(system.T, rhs) if k > 1 else np.zeros(0)
    except np.linalg.LinAlgError as err:
        raise ValueError("gramian gives a singular IMTL-G system (dependent gradients)") from err
    weights = np.concatenate([[1.0 - rest.sum()], rest])
    projections = (g @ weights) / norms
    if np.abs(projections - projections.mean()).max() > rtol * max(np.abs(projections).max(), 1.0):
        raise ValueError(
            "gramian is too ill-conditioned for IMTL-G: projections differ by more "
            f"than rtol={rtol:g}"
        )
    return weights_like(weights, gramian)
