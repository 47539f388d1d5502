"""Metrics against closed forms and brute-force transcriptions; the digits feature network."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mtl_diffusion.data import load_digits_labels, load_digits_split
from mtl_diffusion.features import (
    FEATURE_DIM,
    FeatureNetConfig,
    digit_features,
    feature_network,
    train_classifier,
    weights_path,
)
from mtl_diffusion.metrics import (
    frechet_distance,
    frechet_from_stats,
    kid,
    mmd2_unbiased,
    precision_recall,
)


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _sqrtm_denman_beavers(a: np.ndarray, iters: int = 60) -> np.ndarray:
    """Principal square root of a (non-symmetric) matrix by the Denman-Beavers iteration."""
    y, z = a.copy(), np.eye(len(a))
    for _ in range(iters):
        y, z = (y + np.linalg.inv(z)) / 2, (z + np.linalg.inv(y)) / 2
    return y


# ---------------------------------------------------------------- Frechet distance


def test_frechet_is_zero_for_identical_sets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    assert abs(frechet_distance(x, x)) < 1e-6
    wide = rng.normal(size=(20, 50))  # rank-deficient covariance
    assert abs(frechet_distance(wide, wide)) < 1e-6


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    expected = np.sum((m1 - m2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    fd = frechet_from_stats(m1, np.diag(s1), m2, np.diag(s2))
    assert fd == pytest.approx(expected, rel=1e-10)


def test_frechet_two_by_two_analytic_trace():
    # Tr sqrt(M) = sqrt(Tr M + 2 sqrt(det M)) for a 2x2 M with positive eigenvalues.
    rng = np.random.default_rng(2)
    s1, s2 = _random_spd(rng, 2), _random_spd(rng, 2)
    assert not np.allclose(s1 @ s2, s2 @ s1)
    prod = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(prod) + 2 * np.sqrt(np.linalg.det(prod)))
    mu = np.zeros(2)
    expected = np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_from_stats(mu, s1, mu, s2) == pytest.approx(expected, rel=1e-10)


def test_frechet_full_covariances_against_denman_beavers():
    rng = np.random.default_rng(3)
    s1, s2 = _random_spd(rng, 6), _random_spd(rng, 6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    tr_sqrt = np.trace(_sqrtm_denman_beavers(s1 @ s2))
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_from_stats(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_of_samples_symmetry_translation_and_consistency():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 4))
    y = rng.normal(size=(200, 4)) * 2 + 1
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-10)
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert frechet_distance(x, x + shift) == pytest.approx(shift @ shift, rel=1e-8)
    big_x, big_y = rng.normal(size=(50_000, 3)), rng.normal(size=(50_000, 3)) * 2 + 1
    # N(0, I) vs N(1, 4 I) in 3-D: 3 * 1 + 3 * (1 + 4 - 2 * 2) = 6.
    assert frechet_distance(big_x, big_y) == pytest.approx(6.0, rel=0.03)


def test_frechet_errors():
    with pytest.raises(ValueError, match="feature dimension"):
        frechet_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="x must"):
        frechet_distance(np.zeros(5), np.zeros((5, 1)))
    with pytest.raises(ValueError, match="mu1"):
        frechet_from_stats(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


# ---------------------------------------------------------------- KID


def _mmd2_double_loop(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(a, b):
        return (sum(ai * bi for ai, bi in zip(a, b, strict=True)) / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_the_double_loop_formula():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(7, 3)) + 0.5
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_double_loop(x, y), rel=1e-10)


def test_mmd2_is_unbiased_for_equal_distributions():
    rng = np.random.default_rng(6)
    values = np.array(
        [mmd2_unbiased(rng.normal(size=(20, 4)), rng.normal(size=(20, 4))) for _ in range(400)]
    )
    stderr = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean()) < 3 * stderr
    shifted = np.array(
        [mmd2_unbiased(rng.normal(size=(20, 4)), rng.normal(size=(20, 4)) + 0.7) for _ in range(50)]
    )
    assert shifted.mean() > 10 * stderr


def test_kid_subsets():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(400, 8))
    same, same_std = kid(x, y, subset_size=100, num_subsets=50)
    assert same_std > 0 and abs(same) < 3 * same_std
    assert kid(x, y, subset_size=100, num_subsets=50) == (same, same_std)
    far, far_std = kid(x, y + 1.0, subset_size=100, num_subsets=50)
    assert far > 5 * far_std
    with pytest.raises(ValueError, match="subset_size"):
        kid(x, y, subset_size=301)
    with pytest.raises(ValueError, match="num_subsets"):
        kid(x, y, subset_size=10, num_subsets=0)


# ---------------------------------------------------------------- precision / recall


def _pr_brute(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radius(points, i):
        others = sorted(np.linalg.norm(points[i] - points[j]) for j in range(len(points)) if j != i)
        return others[k - 1]

    def inside(p, centres):
        return any(np.linalg.norm(p - c) <= radius(centres, i) for i, c in enumerate(centres))

    return (np.mean([inside(f, real) for f in fake]), np.mean([inside(r, fake) for r in real]))


def test_precision_recall_brute_force():
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(25, 2)), rng.normal(size=(30, 2)) * 1.5 + 0.5
    for k in (1, 3):
        assert precision_recall(real, fake, k=k) == pytest.approx(_pr_brute(real, fake, k))


def test_precision_recall_extremes():
    rng = np.random.default_rng(9)
    real = rng.normal(size=(200, 5))
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    half_far = np.concatenate([real[:100], real[:100] + 100.0])
    assert precision_recall(real, half_far)[0] == 0.5
    with pytest.raises(ValueError, match="k must"):
        precision_recall(real, real, k=0)
    with pytest.raises(ValueError, match="fake must"):
        precision_recall(real, real[:3], k=3)


# ---------------------------------------------------------------- feature network


@pytest.fixture(scope="module")
def net():
    return feature_network()


def test_feature_network_accuracy_and_cache(net):
    x, y = load_digits_split("test"), load_digits_labels("test")
    with torch.no_grad():
        accuracy = (net(x).argmax(1) == y).double().mean().item()
    assert accuracy >= 0.95
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert weights_path(FeatureNetConfig()).exists()


def test_feature_training_is_deterministic():
    config = FeatureNetConfig(epochs=1)
    a, b = train_classifier(config), train_classifier(config)
    assert all(torch.equal(a.state_dict()[n], t) for n, t in b.state_dict().items())
    assert not torch.equal(a.fc.weight, feature_network().fc.weight)
    assert config.digest() != FeatureNetConfig(epochs=1, seed=1).digest()


def test_digit_features(net):
    x = load_digits_split("test")[:50]
    f = digit_features(x)
    assert f.shape == (50, FEATURE_DIM) and f.dtype == np.float64 and np.isfinite(f).all()
    np.testing.assert_array_equal(digit_features(x * 3), digit_features((x * 3).clamp(-1, 1)))
    with pytest.raises(ValueError, match="images"):
        digit_features(torch.zeros(4, 1, 16, 16))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_metrics_refuse_non_finite_features(bad: float) -> None:
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    fake[3, 1] = bad
    for metric in (frechet_distance, kid, precision_recall):
        with pytest.raises(ValueError, match="non-finite features in 1 of 50 rows"):
            metric(real, fake)
