"""Sample-quality metrics on feature arrays: Frechet distance, unbiased KID, k-NN
precision/recall (``evaluation.py`` applies them to generated images)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

KID_SUBSET_SIZE = 200
KID_SUBSETS = 100
PR_NEIGHBOURS = 3
_CHUNK = 2048


def _as_samples(x: np.ndarray, name: str, min_rows: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < min_rows:
        raise ValueError(f"{name} must be a 2-D array with at least {min_rows} rows, got {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(f"{name} has non-finite features in {bad} of {len(x)} rows (NaN samples?)")
    return x


def _check_same_dim(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same feature dimension, got {x.shape[1]} and {y.shape[1]}"
        )


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; rounding negatives are clipped to 0."""
    vals, vecs = np.linalg.eigh((s + s.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64.

    Tr (S1 S2)^(1/2) is the sum of the singular values of S1^(1/2) S2^(1/2) (their squares are the
    eigenvalues of S1^(1/2) S2 S1^(1/2), which has the spectrum of S1 S2). Taking singular values
    of the product, rather than square roots of eigenvalues of its square, keeps rank-deficient
    covariances accurate to rounding instead of its square root.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"mu1, mu2 must have shape (d,) and s1, s2 shape (d, d); got "
            f"{mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}"
        )
    trace_sqrt = np.linalg.svd(_psd_sqrt(s1) @ _psd_sqrt(s2), compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to samples x (n, d) and y (m, d)."""
    x, y = _as_samples(x, "x", 2), _as_samples(y, "y", 2)
    _check_same_dim(x, y)
    stats = [(a.mean(0), np.cov(a, rowvar=False).reshape(a.shape[1], a.shape[1])) for a in (x, y)]
    return frechet_from_stats(*stats[0], *stats[1])


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = a @ b.T / a.shape[1] + 1.0
    return k * k * k  # several times faster than k ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel (a.b / d + 1)^3 (diagonals of k(x, x), k(y, y) left out)."""
    x, y = _as_samples(x, "x", 2), _as_samples(y, "y", 2)
    _check_same_dim(x, y)
    m, n = len(x), len(y)
    kxx, kyy = _poly_kernel(x, x), _poly_kernel(y, y)
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * _poly_kernel(x, y).mean())


def kid(
    x: np.ndarray,
    y: np.ndarray,
    subset_size: int = KID_SUBSET_SIZE,
    num_subsets: int = KID_SUBSETS,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception-style distance: mean and std of ``mmd2_unbiased`` over ``num_subsets``
    pairs of random subsets (without replacement) of ``subset_size`` rows of x and of y."""
    x, y = _as_samples(x, "x", 2), _as_samples(y, "y", 2)
    if not 2 <= subset_size <= min(len(x), len(y)):
        raise ValueError(
            f"subset_size must be in [2, min(len(x), len(y))] = "
            f"[2, {min(len(x), len(y))}], got {subset_size}"
        )
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be a positive integer, got {num_subsets}")
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            x[rng.choice(len(x), subset_size, replace=False)],
            y[rng.choice(len(y), subset_size, replace=False)],
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> Iterator[np.ndarray]:
    """Squared Euclidean distances from row-chunks of ``a`` to every row of ``b``."""
    b2 = (b * b).sum(1)
    for start in range(0, len(a), _CHUNK):
        chunk = a[start : start + _CHUNK]
        d = (chunk * chunk).sum(1)[:, None] + b2[None, :] - 2.0 * chunk @ b.T
        yield np.maximum(d, 0.0)


def _knn_radii_sq(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance from every row of x to its k-th nearest other row."""
    return np.concatenate([np.partition(d, k, axis=1)[:, k] for d in _sq_dists(x, x)])


def _covered(points: np.ndarray, centres: np.ndarray, radii_sq: np.ndarray) -> float:
    """Fraction of ``points`` inside at least one ball (centre, radius) of the k-NN manifold."""
    hits = np.concatenate([(d <= radii_sq[None, :]).any(1) for d in _sq_dists(points, centres)])
    return float(hits.mean())


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = PR_NEIGHBOURS
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    Each set's manifold is the union of balls around its points with radius the distance to the
    k-th nearest neighbour in the same set; precision is the fraction of fake points inside the
    real manifold, recall the fraction of real points inside the fake manifold.
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    real, fake = _as_samples(real, "real", k + 1), _as_samples(fake, "fake", k + 1)
    _check_same_dim(real, fake)
    precision = _covered(fake, real, _knn_radii_sq(real, k))
    recall = _covered(real, fake, _knn_radii_sq(fake, k))
    return precision, recall
