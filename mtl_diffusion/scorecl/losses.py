"""SimCLR, SimSiam, VICReg and W-MSE losses with per-pair weights on the invariance term.

Every loss takes the two views' outputs for N positive pairs (row i of each tensor is pair i)
and optional `weights` (N,), non-negative. The per-pair invariance (positive) term enters as the
weighted mean (1/N) sum_i w_i l_i; weights are not renormalised here (`pair_weights` gives mean
1), so multiplying every weight by c multiplies the invariance term by c. `weights=None` means
all ones and gives the plain loss. Other terms (SimCLR's negatives, VICReg's variance and
covariance) are batch-level and unweighted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("simclr", "simsiam", "vicreg", "wmse")


def _weights(weights: Tensor | None, like: Tensor) -> Tensor:
    """The per-pair weights as a (N,) tensor of like's dtype (ones when None)."""
    n = len(like)
    if weights is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {tuple(weights.shape)}")
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("weights must be finite and non-negative")
    return weights.to(like.dtype)


def _check_pairs(a: Tensor, b: Tensor) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f"both views must be (N, D) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def simclr_loss(
    z1: Tensor, z2: Tensor, weights: Tensor | None = None, temperature: float = 0.5
) -> Tensor:
    """NT-Xent over the 2N embeddings (cosine similarity / temperature). For anchor a with
    positive p(a), l_a = -sim(a, p(a)) + log sum_{k != a} exp(sim(a, k)); the loss is the mean
    over the 2N anchors, with the positive term -sim(a, p(a)) of both anchors of pair i
    weighted by w_i."""
    _check_pairs(z1, z2)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    w = _weights(weights, z1).repeat(2)
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    anchors = torch.arange(2 * n, device=z.device)
    positive = sim[anchors, (anchors + n) % (2 * n)]
    return (w * -positive).mean() + torch.logsumexp(sim, dim=1).mean()


def simsiam_loss(
    p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor, weights: Tensor | None = None
) -> Tensor:
    """Symmetrised negative cosine between each view's prediction p and the other view's
    stop-gradient projection z: l_i = -(cos(p1_i, sg z2_i) + cos(p2_i, sg z1_i)) / 2, all of it
    the invariance term."""
    _check_pairs(p1, p2)
    _check_pairs(z1, z2)
    _check_pairs(p1, z1)
    w = _weights(weights, p1)
    cos12 = F.cosine_similarity(p1, z2.detach(), dim=1)
    cos21 = F.cosine_similarity(p2, z1.detach(), dim=1)
    return (w * -(cos12 + cos21) / 2).mean()


def vicreg_loss(
    z1: Tensor,
    z2: Tensor,
    weights: Tensor | None = None,
    invariance_coef: float = 25.0,
    variance_coef: float = 25.0,
    covariance_coef: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> Tensor:
    """lambda * s + mu * (v(Z1) + v(Z2)) + nu * (c(Z1) + c(Z2)), where
    s = (1/N) sum_i w_i ||z1_i - z2_i||^2 / D (invariance, per-element mean as in the authors'
    coefficients), v(Z) = (1/D) sum_j relu(gamma - sqrt(Var_j(Z) + eps)) (unbiased variance) and
    c(Z) = (1/D) sum_{j != k} Cov(Z)_jk^2 (unbiased covariance)."""
    _check_pairs(z1, z2)
    w = _weights(weights, z1)
    invariance = (w * ((z1 - z2) ** 2).mean(dim=1)).mean()
    return (
        invariance_coef * invariance
        + variance_coef * (_variance_term(z1, gamma, eps) + _variance_term(z2, gamma, eps))
        + covariance_coef * (_covariance_term(z1) + _covariance_term(z2))
    )


def _variance_term(z: Tensor, gamma: float, eps: float) -> Tensor:
    return F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()


def _covariance_term(z: Tensor) -> Tensor:
    n, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return (off_diagonal**2).sum() / d


def whiten(z: Tensor, shrinkage: float = 0.0) -> Tensor:
    """Cholesky whitening of a batch (N, D): centre, then multiply by L^{-1} where
    (1 - shrinkage) Cov + shrinkage I = L L^T (unbiased covariance). Needs N > D."""
    n, d = z.shape
    if n <= d:
        raise ValueError(f"whitening needs more samples than dimensions, got N={n}, D={d}")
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    cov = (1 - shrinkage) * cov + shrinkage * torch.eye(d, dtype=z.dtype, device=z.device)
    lower = torch.linalg.cholesky(cov)
    return torch.linalg.solve_triangular(lower, centred.T, upper=False).T


def wmse_loss(
    z1: Tensor, z2: Tensor, weights: Tensor | None = None, shrinkage: float = 0.0
) -> Tensor:
    """W-MSE (Ermolov et al., 2021): each view's batch is whitened with its own statistics,
    rows are L2-normalised, and l_i = ||h1_i - h2_i||^2 = 2 - 2 cos(h1_i, h2_i) is the
    invariance term."""
    _check_pairs(z1, z2)
    w = _weights(weights, z1)
    h1 = F.normalize(whiten(z1, shrinkage), dim=1)
    h2 = F.normalize(whiten(z2, shrinkage), dim=1)
    return (w * (2 - 2 * (h1 * h2).sum(dim=1))).mean()
