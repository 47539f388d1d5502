"""Interval clustering: vectorised O(k T^2) DP against the published-style O(k T^3) recurrence.

For each objective (timestep, log-SNR of a linear schedule, a synthetic smooth task affinity) at
T = 1000 and k = 8, times cost building + DP here, and once the published recurrence: a pure-Python
triple loop that computes every interval's cost on demand with a numpy sum over the interval's
timesteps, as the official ANT code does. Both run in this process on the same objective; the
script checks that they reach the same optimal total and prints the speed ratio. ``--quick`` runs
both paths at T = 200 (about 25x less work for the slow path). Usage:

    python benchmarks/bench_clustering.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np

from mtl_diffusion.clustering import (
    affinity_cost,
    clustering_cost,
    interval_clustering,
    snr_cost,
    timestep_cost,
)

IntervalCost = Callable[[int, int], float]


def published_recurrence(interval_cost: IntervalCost, T: int, k: int) -> tuple[float, list]:
    """D[i][0] = cost(0, i); D[i][j] = min_{l in j-1..i-1} D[l][j-1] + cost(l+1, i); backtrack."""
    D = [[math.inf] * k for _ in range(T)]
    S = [[0] * k for _ in range(T)]
    for i in range(T):
        D[i][0] = interval_cost(0, i)
    for j in range(1, k):
        for i in range(j, T):
            for l in range(j - 1, i):  # noqa: E741 (the paper's name)
                value = D[l][j - 1] + interval_cost(l + 1, i)
                if value < D[i][j]:
                    D[i][j], S[i][j] = value, l
    intervals, end = [], T - 1
    for j in range(k - 1, 0, -1):
        intervals.append((S[end][j] + 1, end))
        end = S[end][j]
    intervals.append((0, end))
    return D[T - 1][k - 1], intervals[::-1]


def objectives(T: int) -> dict[str, tuple[Callable[[], np.ndarray], IntervalCost]]:
    """name -> (fast cost-matrix builder, slow per-interval cost), both for the same objective."""
    alpha_bar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))
    log_snr = np.log(alpha_bar / (1.0 - alpha_bar))
    steps = np.arange(T)
    tas = np.exp(-np.abs(steps[:, None] - steps[None, :]) / (T / 10))

    def slow_timestep(i: int, j: int) -> float:
        return float((j - i + 1) ** 2)

    def slow_snr(i: int, j: int) -> float:
        return float(np.abs(log_snr[i : j + 1] - log_snr[(i + j) // 2]).sum())

    def slow_affinity(i: int, j: int) -> float:
        return float(-tas[(i + j) // 2, i : j + 1].sum())

    return {
        "timestep": (lambda: timestep_cost(T), slow_timestep),
        "log-SNR (linear betas)": (lambda: snr_cost(log_snr), slow_snr),
        "affinity exp(-|i-j|/(T/10))": (lambda: affinity_cost(tas), slow_affinity),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run both paths at T = 200")
    parser.add_argument("--k", type=int, default=8, help="number of intervals")
    parser.add_argument("--repeats", type=int, default=5, help="fast-path repeats (median)")
    args = parser.parse_args()
    T = 200 if args.quick else 1000
    print(f"interval clustering, T = {T}, k = {args.k}" + (" (--quick)" if args.quick else ""))
    header = f"{'objective':30s} {'fast ms':>9s} {'published s':>12s} {'ratio':>8s}  same optimum"
    print(header)
    print("-" * len(header))
    for name, (build, slow_cost) in objectives(T).items():
        fast_times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            cost = build()
            intervals = interval_clustering(cost, args.k)
            fast_times.append(time.perf_counter() - start)
        fast = statistics.median(fast_times)
        start = time.perf_counter()
        slow_total, slow_intervals = published_recurrence(slow_cost, T, args.k)
        slow = time.perf_counter() - start
        fast_total = clustering_cost(cost, intervals)
        same = math.isclose(fast_total, slow_total, rel_tol=1e-9, abs_tol=1e-9)
        if not same:
            raise SystemExit(f"{name}: totals differ, fast {fast_total!r} vs slow {slow_total!r}")
        note = "yes" + ("" if intervals == slow_intervals else " (tie: other intervals)")
        print(f"{name:30s} {fast * 1e3:9.1f} {slow:12.2f} {slow / fast:7.0f}x  {note}")


if __name__ == "__main__":
    main()
