"""PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning") written on the Gramian.

Each projected gradient pc_i is a combination sum_j C_ij g_j of the original gradients, so every
inner product it needs is (C G)_ij = pc_i . g_j, and the summed update sum_i pc_i has weights
w = sum_i C_i (the column sums of C).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtl_diffusion.mtl.gramian import gramian_array, weights_like


def _random_orders(k: int, generator: torch.Generator | None) -> list[list[int]]:
    """For each task i, the other tasks in a random order."""
    orders = []
    for i in range(k):
        others = [j for j in range(k) if j != i]
        perm = torch.randperm(k - 1, generator=generator).tolist()
        orders.append([others[p] for p in perm])
    return orders


def _check_orders(order: Sequence[Sequence[int]], k: int) -> list[list[int]]:
    """`order` as lists; raises ValueError unless order[i] is a permutation of the tasks != i."""
    order = [list(o) for o in order]
    if len(order) != k:
        raise ValueError(f"order must have one entry per task ({k}), got {len(order)}")
    for i, o in enumerate(order):
        if sorted(o) != [j for j in range(k) if j != i]:
            raise ValueError(f"order[{i}] must list every task except {i} once, got {o}")
    return order


def pcgrad_weights(
    gramian: torch.Tensor,
    order: Sequence[Sequence[int]] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Weights w with sum_i w_i g_i = PCGrad's summed projected gradient sum_i pc_i.

    pc_i starts at g_i; for j in order[i], if pc_i . g_j < 0 then
    pc_i -= (pc_i . g_j / ||g_j||^2) g_j (projection on the ORIGINAL g_j; zero g_j are skipped).
    order=None draws a random order per task from `generator`.
    """
    g = gramian_array(gramian)
    k = g.shape[0]
    order = _random_orders(k, generator) if order is None else _check_orders(order, k)
    coefficients = np.eye(k)
    for i in range(k):
        for j in order[i]:
            dot = coefficients[i] @ g[:, j]
            if dot < 0 and g[j, j] > 0:
                coefficients[i, j] -= dot / g[j, j]
    return weights_like(coefficients.sum(axis=0), gramian)
