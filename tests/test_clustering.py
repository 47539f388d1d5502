"""Interval clustering against brute force, slow transcriptions of the costs, and properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mtl_diffusion.clustering import (
    affinity_clusters,
    affinity_cost,
    cluster_index,
    clustering_cost,
    interval_clustering,
    snr_clusters,
    snr_cost,
    timestep_clusters,
    timestep_cost,
    validate_intervals,
)


def brute_force_best(cost: np.ndarray, k: int) -> float:
    """Minimal summed cost over every way to cut 0..T-1 into k non-empty intervals."""
    T = cost.shape[0]
    best = np.inf
    for cuts in itertools.combinations(range(1, T), k - 1):
        starts = (0, *cuts)
        ends = (*(c - 1 for c in cuts), T - 1)
        best = min(best, sum(cost[s, e] for s, e in zip(starts, ends, strict=True)))
    return best


def assert_partition(intervals: list[tuple[int, int]], T: int, k: int) -> None:
    """k non-empty, contiguous, in-order intervals covering exactly 0..T-1."""
    assert len(intervals) == k
    covered = [t for s, e in intervals for t in range(s, e + 1)]
    assert covered == list(range(T))
    assert all(s <= e for s, e in intervals)


def linear_log_snr(T: int = 1000) -> np.ndarray:
    alpha_bar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))
    return np.log(alpha_bar / (1.0 - alpha_bar))


def ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


@pytest.mark.parametrize("kind", ["normal", "small_integers"])
def test_matches_brute_force_for_every_k(kind: str) -> None:
    rng = np.random.default_rng(0)
    for T in range(1, 9):
        for _ in range(3):
            if kind == "normal":
                cost = rng.normal(size=(T, T))
            else:  # many ties and many zero-cost intervals
                cost = rng.integers(0, 3, size=(T, T)).astype(float)
            for k in range(1, T + 1):
                intervals = interval_clustering(cost, k)
                assert_partition(intervals, T, k)
                total = sum(cost[s, e] for s, e in intervals)
                assert total == pytest.approx(brute_force_best(cost, k), abs=1e-12)


def test_k_one_and_k_equal_T() -> None:
    cost = np.random.default_rng(1).uniform(size=(7, 7))
    assert interval_clustering(cost, 1) == [(0, 6)]
    assert interval_clustering(cost, 7) == [(t, t) for t in range(7)]
    assert interval_clustering(np.array([[3.0]]), 1) == [(0, 0)]


def test_all_zero_cost_is_valid_and_ties_give_the_documented_partition() -> None:
    for k in range(1, 6):
        intervals = interval_clustering(np.zeros((5, 5)), k)
        # last cut as early as possible, then the one before it, ...
        assert intervals == [(t, t) for t in range(k - 1)] + [(k - 1, 4)]


def test_zero_cost_intervals_are_chosen_when_optimal() -> None:
    cost = np.random.default_rng(2).uniform(1.0, 2.0, size=(6, 6))
    cost[0, 1] = cost[2, 4] = cost[5, 5] = 0.0
    assert interval_clustering(cost, 3) == [(0, 1), (2, 4), (5, 5)]


def test_entries_below_the_diagonal_are_ignored() -> None:
    cost = np.random.default_rng(3).uniform(size=(6, 6))
    poisoned = cost.copy()
    poisoned[np.tril_indices(6, -1)] = np.nan
    for k in range(1, 7):
        assert interval_clustering(poisoned, k) == interval_clustering(cost, k)


def test_accepts_torch_cost_and_negative_costs() -> None:
    cost = np.random.default_rng(4).normal(size=(6, 6)) - 5.0
    assert interval_clustering(torch.from_numpy(cost), 3) == interval_clustering(cost, 3)


@pytest.mark.parametrize(
    ("cost", "k", "match"),
    [
        (np.zeros(5), 1, "square"),
        (np.zeros((3, 4)), 1, "square"),
        (np.zeros((0, 0)), 1, "square"),
        (np.zeros((2, 2, 2)), 1, "square"),
        (np.zeros((4, 4)), 0, "k must be an integer in 1..4"),
        (np.zeros((4, 4)), 5, "k must be an integer in 1..4"),
        (np.zeros((4, 4)), 2.0, "k must be an integer"),
        (np.zeros((4, 4)), True, "k must be an integer"),
        (np.triu(np.full((3, 3), np.nan)), 1, "finite"),
        (np.array([[0.0, np.inf], [0.0, 0.0]]), 2, "finite"),
        (np.full((3, 3), 1e308), 3, "overflows"),
        ([["a", "b"], ["c", "d"]], 1, "cost must be a real numeric array"),
    ],
)
def test_interval_clustering_rejects_bad_input(cost: object, k: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        interval_clustering(cost, k)


@pytest.mark.parametrize(("T", "k"), [(1000, 5), (1000, 8), (12, 4), (1, 1), (6, 6)])
def test_timestep_clusters_are_equal_width_when_k_divides_T(T: int, k: int) -> None:
    width = T // k
    assert timestep_clusters(T, k) == [(i * width, (i + 1) * width - 1) for i in range(k)]


@pytest.mark.parametrize(("T", "k"), [(1000, 7), (1000, 3), (13, 4), (10, 3), (7, 6)])
def test_timestep_clusters_are_near_equal_otherwise(T: int, k: int) -> None:
    intervals = timestep_clusters(T, k)
    assert_partition(intervals, T, k)
    widths = [e - s + 1 for s, e in intervals]
    assert max(widths) - min(widths) == 1


def test_timestep_cost_definition() -> None:
    cost = timestep_cost(4)
    for i in range(4):
        for j in range(i, 4):
            assert cost[i, j] == (j - i + 1) ** 2


def test_snr_cost_matches_its_definition() -> None:
    rng = np.random.default_rng(5)
    for values in (rng.normal(size=9), np.sort(rng.exponential(size=9))[::-1], np.ones(1)):
        cost = snr_cost(values)
        T = len(values)
        for i in range(T):
            for j in range(i, T):
                c = (i + j) // 2
                expected = sum(abs(values[t] - values[c]) for t in range(i, j + 1))
                assert cost[i, j] == pytest.approx(expected, abs=1e-12)


def test_affinity_cost_matches_its_definition() -> None:
    tas = np.random.default_rng(6).uniform(-1, 1, size=(9, 9))  # not symmetric on purpose
    cost = affinity_cost(torch.from_numpy(tas))
    for i in range(9):
        for j in range(i, 9):
            c = (i + j) // 2
            expected = -sum(tas[c, t] for t in range(i, j + 1))
            assert cost[i, j] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [5, 8])
def test_log_snr_clusters_are_narrow_where_log_snr_moves_fast(k: int) -> None:
    log_snr = linear_log_snr()
    intervals = snr_clusters(np.exp(log_snr), k)
    assert_partition(intervals, 1000, k)
    widths = np.array([e - s + 1 for s, e in intervals], dtype=float)
    slopes = np.array([abs(log_snr[e] - log_snr[s]) / (e - s) for s, e in intervals])
    spearman = np.corrcoef(ranks(widths), ranks(slopes))[0, 1]
    assert spearman < -0.9
    assert np.argmin(widths) == np.argmax(slopes) == 0  # log-SNR is steepest at low t


def test_snr_clusters_accept_schedules_tensors_and_raw_snr() -> None:
    snr = np.exp(linear_log_snr(200))

    class Schedule:
        def snr(self) -> torch.Tensor:
            return torch.from_numpy(snr)

    expected = interval_clustering(snr_cost(np.log(snr)), 4)
    assert snr_clusters(Schedule(), 4) == expected
    assert snr_clusters(torch.from_numpy(snr), 4) == expected
    assert snr_clusters(snr, 4, use_log=False) == interval_clustering(snr_cost(snr), 4)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: snr_clusters(np.array([2.0, 1.0, 0.0]), 2), "positive"),
        (lambda: snr_cost(np.ones((2, 2))), "values must be a non-empty 1-D array"),
        (lambda: snr_cost(np.array([1.0, np.nan])), "values must be finite"),
        (lambda: affinity_cost(np.ones((2, 3))), "tas must be a square"),
        (lambda: affinity_cost(np.array([[np.inf]])), "tas must be finite"),
        (lambda: affinity_clusters(np.eye(4), 2, bin_width=0), "bin_width must be an integer >= 1"),
        (lambda: affinity_clusters(np.eye(4), 5), "k must be an integer in 1..4"),
        (lambda: timestep_cost(0), "T must be an integer >= 1"),
        (lambda: timestep_clusters(10, 11), "k must be an integer in 1..10"),
    ],
)
def test_cost_builders_and_conveniences_reject_bad_input(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_affinity_clusters_find_blocks_and_expand_bins() -> None:
    block = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    tas = np.where(block[:, None] == block[None, :], 1.0, -1.0)
    assert affinity_clusters(tas, 2) == [(0, 4), (5, 9)]
    assert affinity_clusters(tas, 2, bin_width=100) == [(0, 499), (500, 999)]
    smooth = np.exp(-np.abs(np.subtract.outer(np.arange(12), np.arange(12))) / 3.0)
    assert affinity_clusters(smooth, 3) == interval_clustering(affinity_cost(smooth), 3)


def test_cluster_index_matches_a_loop() -> None:
    intervals = [(0, 2), (3, 3), (4, 8), (9, 11)]

    def loop(t: int) -> int:
        return next(i for i, (s, e) in enumerate(intervals) if s <= t <= e)

    t = np.random.default_rng(7).integers(0, 12, size=(3, 5))
    expected = np.vectorize(loop)(t)
    got = cluster_index(intervals, t)
    assert got.shape == t.shape and got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)

    got_torch = cluster_index(intervals, torch.from_numpy(t).to(torch.int32))
    assert got_torch.dtype == torch.long and got_torch.shape == t.shape
    np.testing.assert_array_equal(got_torch.numpy(), expected)

    assert int(cluster_index(intervals, 3)) == 1
    np.testing.assert_array_equal(cluster_index([(0, 9)], np.arange(10)), np.zeros(10))


@pytest.mark.parametrize(
    ("t", "match"),
    [
        (np.array([0, 10]), r"t must lie in 0..T-1 = 0..9"),
        (torch.tensor([-1]), r"t must lie in 0..T-1 = 0..9"),
        (np.array([1.0]), "integer timesteps"),
        (torch.tensor([1.0]), "integer timesteps"),
    ],
)
def test_cluster_index_rejects_bad_timesteps(t: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cluster_index([(0, 4), (5, 9)], t)


@pytest.mark.parametrize(
    ("intervals", "T", "match"),
    [
        ([], None, "at least one"),
        ([(1, 4)], None, "should start at 0"),
        ([(0, 2), (4, 6)], None, "should start at 3"),
        ([(0, 2), (2, 6)], None, "should start at 3"),
        ([(0, 2), (3, 1)], None, "empty"),
        ([(0, 2), (3, 6)], 8, "cover 0..T-1 = 0..7"),
        ([(0, 2.5)], None, "integer pairs"),
        ([(0, 1, 2)], None, "integer pairs"),
        ([(0, 2)], 0, "T must be an integer >= 1"),
    ],
)
def test_validate_intervals_rejects(intervals: list, T: int | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_intervals(intervals, T)


def test_validate_intervals_and_clustering_cost_accept_a_partition() -> None:
    cost = np.arange(16.0).reshape(4, 4)
    intervals = [(np.int64(0), np.int64(1)), (2, 3)]
    assert validate_intervals(intervals, 4) == [(0, 1), (2, 3)]
    assert clustering_cost(cost, intervals) == cost[0, 1] + cost[2, 3]
