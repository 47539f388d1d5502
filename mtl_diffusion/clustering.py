"""Interval clustering: split timesteps 0..T-1 into k contiguous intervals of minimal summed cost.

The cost of every candidate interval is given as a (T, T) matrix, ``cost[i, j]`` for timesteps
i..j inclusive (only i <= j is read). :func:`interval_clustering` solves the partition exactly by
dynamic programming in O(k T^2) with one vectorised numpy minimum per layer. The cost builders
follow ANT (Go et al., 2023) with the interval's centre taken as ``c = (i + j) // 2`` (the lower
midpoint; the published code used an upper midpoint):

- :func:`timestep_cost`: squared interval length, whose optimum is k equal-width intervals;
- :func:`snr_cost`: ``sum_{t in I} |v[t] - v[c]|`` for (log-)SNR values v;
- :func:`affinity_cost`: ``-sum_{t in I} tas[c, t]`` for a task-affinity matrix.

The builders fill the unused lower triangle with 0 and take O(T^2) time and memory.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

Interval = tuple[int, int]


class HasSNR(Protocol):
    """Anything with an ``snr()`` method, such as ``mtl_diffusion.diffusion.Schedule``."""

    def snr(self) -> torch.Tensor: ...


def interval_clustering(cost: np.ndarray | torch.Tensor, k: int) -> list[Interval]:
    """Return the k inclusive ``(start, end)`` intervals covering 0..T-1 of minimal summed cost.

    ``cost[i, j]`` is the cost of the interval i..j; entries below the diagonal are ignored.
    Any finite cost is allowed, zero and negative included. Ties: the backtrack places the last
    cut as early as possible, then the one before it, and so on (``np.argmin`` keeps the first
    minimum), so among equally good partitions later intervals are as long as possible.
    """
    cost = _float_array(cost, "cost")
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1] or cost.shape[0] == 0:
        raise ValueError(f"cost must be a square (T, T) array with T >= 1, got shape {cost.shape}")
    T = cost.shape[0]
    k = _int_in_range(k, "k", 1, T)
    valid = np.tri(T, dtype=bool)  # valid[j, i]: i <= j
    if not np.isfinite(np.where(valid, cost.T, 0.0)).all():
        raise ValueError("cost must be finite on and above the diagonal (i <= j); found NaN or inf")

    by_end = np.where(valid, cost.T, np.inf)  # by_end[j, i] = cost of i..j, inf where i > j
    tail = by_end[:, 1:]  # tail[i, l] = cost of l+1..i: one contiguous row per end i
    totals = np.empty_like(tail)
    rows = np.arange(T)
    best = by_end[:, 0].copy()  # best[i]: minimal cost of covering 0..i with the intervals so far
    choices = []  # choices[j - 1][i]: end of the previous interval in the best cover of 0..i
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught just below
        for _ in range(1, k):
            np.add(tail, best[:-1], out=totals)  # totals[i, l] = best[l] + cost of l+1..i
            previous_end = np.argmin(totals, axis=1)
            best = totals[rows, previous_end]
            choices.append(previous_end)
    if not np.isfinite(best[-1]):
        raise ValueError("cost is too large in magnitude: the summed cost overflows float64")

    intervals = []
    end = T - 1
    for previous_end in reversed(choices):
        start = int(previous_end[end]) + 1
        intervals.append((start, end))
        end = start - 1
    intervals.append((0, end))
    return intervals[::-1]


def clustering_cost(cost: np.ndarray | torch.Tensor, intervals: Sequence[Interval]) -> float:
    """Summed ``cost[start, end]`` over ``intervals``, which must cover 0..T-1 for T = len(cost)."""
    cost = _float_array(cost, "cost")
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"cost must be a square (T, T) array, got shape {cost.shape}")
    pairs = validate_intervals(intervals, cost.shape[0])
    return float(sum(cost[start, end] for start, end in pairs))


def validate_intervals(intervals: Sequence[Interval], T: int | None = None) -> list[Interval]:
    """Check that ``intervals`` are contiguous inclusive pairs from 0 (to T - 1 when T is given).

    Returns them as a list of ``(int, int)`` tuples; raises ValueError naming the first problem.
    """
    try:
        pairs = [(operator.index(start), operator.index(end)) for start, end in intervals]
    except (TypeError, ValueError) as err:
        raise ValueError("intervals must be a sequence of (start, end) integer pairs") from err
    if not pairs:
        raise ValueError("intervals must hold at least one (start, end) pair, got none")
    expected_start = 0
    for position, (start, end) in enumerate(pairs):
        if start != expected_start:
            raise ValueError(
                f"intervals must be contiguous from 0: interval {position} is ({start}, {end}) "
                f"but should start at {expected_start}"
            )
        if end < start:
            raise ValueError(f"interval {position} is empty: ({start}, {end}) has end < start")
        expected_start = end + 1
    if T is not None:
        T = _int_in_range(T, "T", 1)
        if pairs[-1][1] != T - 1:
            raise ValueError(f"intervals must cover 0..T-1 = 0..{T - 1}, but end at {pairs[-1][1]}")
    return pairs


def cluster_index(
    intervals: Sequence[Interval], t: np.ndarray | torch.Tensor | int
) -> np.ndarray | torch.Tensor:
    """Map integer timesteps ``t`` to the index of the interval holding them.

    A torch tensor gives a long tensor on the same device; anything else an int64 numpy array;
    both keep the shape of ``t``. Timesteps outside 0..T-1 (T = last end + 1) raise ValueError.
    """
    pairs = validate_intervals(intervals)
    T = pairs[-1][1] + 1
    later_starts = [start for start, _ in pairs[1:]]
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"t must hold integer timesteps, got dtype {t.dtype}")
        t = t.long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= T):
            raise ValueError(f"t must lie in 0..T-1 = 0..{T - 1}")
        starts = torch.tensor(later_starts, dtype=torch.long, device=t.device)
        return torch.searchsorted(starts, t.contiguous(), right=True)
    values = np.asarray(t)
    if values.dtype.kind not in "iu":
        raise ValueError(f"t must hold integer timesteps, got dtype {values.dtype}")
    if values.size and (values.min() < 0 or values.max() >= T):
        raise ValueError(f"t must lie in 0..T-1 = 0..{T - 1}")
    starts_np = np.asarray(later_starts, dtype=np.int64)
    return np.asarray(np.searchsorted(starts_np, values, side="right"), dtype=np.int64)


def timestep_cost(T: int) -> np.ndarray:
    """(T, T) cost ``(j - i + 1) ** 2``: strictly convex in the length, so the optimum has widths
    differing by at most one (exactly equal when k divides T)."""
    T = _int_in_range(T, "T", 1)
    start = np.arange(T)[:, None]
    end = np.arange(T)[None, :]
    return np.where(end >= start, (end - start + 1.0) ** 2, 0.0)


def snr_cost(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """(T, T) cost ``sum_{t=i..j} |values[t] - values[c]|`` with ``c = (i + j) // 2``.

    Pass log-SNR (as the ANT figures do) or raw SNR: the choice is the caller's.
    """
    values = _float_array(values, "values")
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("values must be finite (zero SNR has log-SNR -inf)")
    return _centred_cost(np.abs(values[None, :] - values[:, None]))


def affinity_cost(tas: np.ndarray | torch.Tensor) -> np.ndarray:
    """(G, G) cost ``-sum_{t=i..j} tas[c, t]`` with ``c = (i + j) // 2``, for a task-affinity
    matrix over G timesteps or bins (row c is the centre task; ``tas`` need not be symmetric)."""
    tas = _float_array(tas, "tas")
    if tas.ndim != 2 or tas.shape[0] != tas.shape[1] or tas.shape[0] == 0:
        raise ValueError(f"tas must be a square (G, G) array with G >= 1, got shape {tas.shape}")
    if not np.isfinite(tas).all():
        raise ValueError("tas must be finite")
    return _centred_cost(-tas)


def timestep_clusters(T: int, k: int) -> list[Interval]:
    """k intervals of (near-)equal width covering 0..T-1 (widths differ by at most one)."""
    return interval_clustering(timestep_cost(T), k)


def snr_clusters(
    schedule_or_snr: HasSNR | np.ndarray | torch.Tensor,
    k: int,
    use_log: bool = True,
    zero_snr: str = "error",
) -> list[Interval]:
    """Cluster on the SNR of a schedule (anything with ``.snr()``) or a 1-D array of SNR values
    (e.g. ``alphas_cumprod / (1 - alphas_cumprod)`` of a diffusers scheduler).

    ``use_log=True`` clusters log-SNR; ``False`` raw SNR. A zero SNR (a zero-terminal-SNR
    schedule's last step) has no logarithm: ``zero_snr="error"`` refuses it, ``"merge"`` gives
    those steps the smallest positive SNR, so they join the highest-noise interval.
    """
    if zero_snr not in ("error", "merge"):
        raise ValueError(f"zero_snr must be 'error' or 'merge', got {zero_snr!r}")
    snr_method = getattr(schedule_or_snr, "snr", None)
    snr = snr_method() if callable(snr_method) else schedule_or_snr
    values = _float_array(snr, "schedule_or_snr")
    if use_log and values.ndim == 1:
        zero = values == 0
        if zero.any() and zero_snr == "merge" and (values > 0).any():
            values = np.where(zero, values[values > 0].min(), values)
        if not (values > 0).all():
            raise ValueError(
                "SNR must be positive for use_log=True; for a zero-terminal-SNR schedule pass "
                "zero_snr='merge', or use_log=False to cluster raw SNR"
            )
    if use_log:
        values = np.log(values)
    return interval_clustering(snr_cost(values), k)


def affinity_clusters(tas: np.ndarray | torch.Tensor, k: int, bin_width: int = 1) -> list[Interval]:
    """Cluster the G tasks (or bins) of ``tas`` and expand to timesteps.

    Bin b covers timesteps ``b * bin_width .. (b + 1) * bin_width - 1``, so the intervals cover
    0..G * bin_width - 1. ``bin_width=1`` means ``tas`` is per timestep.
    """
    bin_width = _int_in_range(bin_width, "bin_width", 1)
    bins = interval_clustering(affinity_cost(tas), k)
    return [(start * bin_width, (end + 1) * bin_width - 1) for start, end in bins]


def _centred_cost(weights: np.ndarray) -> np.ndarray:
    """cost[i, j] = sum_{t=i..j} weights[(i + j) // 2, t] by prefix sums along rows; 0 if i > j."""
    T = weights.shape[0]
    prefix = np.zeros((T, T + 1))
    np.cumsum(weights, axis=1, out=prefix[:, 1:])
    start = np.arange(T)[:, None]
    end = np.arange(T)[None, :]
    centre = (start + end) // 2
    cost = prefix[centre, end + 1] - prefix[centre, start]
    return np.where(end >= start, cost, 0.0)


def _float_array(x: object, name: str) -> np.ndarray:
    """``x`` (numpy, torch or nested sequences) as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real numeric array, got {type(x).__name__}") from err


def _int_in_range(value: object, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in low..high (inclusive), else ValueError naming ``name``."""
    allowed = f"an integer in {low}..{high}" if high is not None else f"an integer >= {low}"
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError as err:
        raise ValueError(f"{name} must be {allowed}, got {value!r}") from err
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be {allowed}, got {number}")
    return number
