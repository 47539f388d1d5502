"""Paired comparisons across replicates: the one place where notebooks turn numbers into verdicts.

A replicate is one seed: within it every arm shares initial weights, data order and evaluation
noise, so arm B is compared with arm A through the per-replicate differences d_r = B_r - A_r.
The confidence interval of mean(d) is a Student t-interval (default; exact for normal
differences at any n) or a percentile bootstrap over replicates (for n >= about 30: with 8
replicates it calls a difference in 13 % of null experiments at 95 %); a verdict ("lower" /
"higher") is given only when the interval excludes zero, else "no verdict". Spread is always
the sample standard deviation (ddof = 1) over replicates.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

METHODS = ("t", "bootstrap")
VERDICTS = ("lower", "higher", "no verdict")
BOOTSTRAP_DRAWS = 10_000


@dataclass(frozen=True)
class Summary:
    """Mean, spread (sample standard deviation, ddof = 1), standard error and count."""

    mean: float
    sd: float
    sem: float
    n: int


def summarize(values: Sequence[float] | np.ndarray) -> Summary:
    """Summary of finite values over replicates (sd and sem are nan for a single value)."""
    x = _finite(values, "values", 1)
    sd = float(x.std(ddof=1)) if len(x) > 1 else float("nan")
    return Summary(float(x.mean()), sd, sd / np.sqrt(len(x)), len(x))


@dataclass(frozen=True)
class Comparison:
    """mean(B - A) over replicates with its confidence interval and the verdict it supports."""

    difference: float
    low: float
    high: float
    n: int
    confidence: float
    method: str

    @property
    def verdict(self) -> str:
        """ "lower" / "higher" (B than A) when the interval excludes zero, else "no verdict"."""
        if self.high < 0:
            return "lower"
        if self.low > 0:
            return "higher"
        return "no verdict"

    def __str__(self) -> str:
        level = f"{100 * self.confidence:g} %"
        return (
            f"{self.difference:+.3g} [{self.low:+.3g}, {self.high:+.3g}] ({level} {self.method}"
            f"-interval, n = {self.n}): {self.verdict}"
        )


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    method: str = "t",
    seed: int = 0,
) -> Comparison:
    """Compare arm B with arm A on the same replicates (a[r] and b[r] share seed r)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x, y = _finite(a, "a", 2), _finite(b, "b", 2)
    if x.shape != y.shape:
        raise ValueError(f"a and b must hold the same replicates, got {x.shape} and {y.shape}")
    d = y - x
    mean = float(d.mean())
    if method == "t":
        half = scipy_stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        low, high = mean - half, mean + half
    else:
        rng = np.random.default_rng(seed)
        means = d[rng.integers(0, len(d), (BOOTSTRAP_DRAWS, len(d)))].mean(axis=1)
        low, high = np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Comparison(mean, float(low), float(high), len(d), confidence, method)


def check_verdicts(
    stated: Mapping[Hashable, str], computed: Mapping[Hashable, str]
) -> tuple[dict, dict]:
    """A notebook's stated verdicts against the ones its run computed: (differ, reversed), each
    key -> (stated, computed). `differ` holds every stated verdict the run does not reproduce;
    `reversed` only those it contradicts ("lower" against "higher"), the one disagreement that
    refutes a statement rather than failing to support it: an interval that ends near zero can
    move into or out of "no verdict" on another CPU type, a reversal cannot by rounding."""
    bad = {k: v for k, v in {**stated, **computed}.items() if v not in VERDICTS}
    if bad:
        raise ValueError(f"verdicts must be one of {VERDICTS}, got {bad}")
    missing = [k for k in stated if k not in computed]
    if missing:
        raise KeyError(f"stated verdicts that the run did not compute: {missing}")
    differ = {k: (v, computed[k]) for k, v in stated.items() if computed[k] != v}
    reverse = {k: v for k, v in differ.items() if "no verdict" not in v}
    return differ, reverse


def _finite(values: Sequence[float] | np.ndarray, name: str, min_count: int) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < min_count or not np.isfinite(x).all():
        raise ValueError(
            f"{name} must be a 1-D sequence of at least {min_count} finite values (one per "
            f"replicate), got {x.tolist() if x.size < 10 else x.shape}"
        )
    return x
