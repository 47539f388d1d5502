"""Paired comparisons against scipy's paired t-test and against simulated experiments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mtl_diffusion.stats import VERDICTS, check_verdicts, paired_difference, summarize


def test_the_t_interval_is_scipys_paired_t_interval() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(3.0, 0.2, 6)
    b = a + rng.normal(-0.1, 0.05, 6)
    got = paired_difference(a, b, confidence=0.9)
    want = scipy_stats.ttest_rel(b, a).confidence_interval(confidence_level=0.9)
    assert got.low == pytest.approx(want.low) and got.high == pytest.approx(want.high)
    assert got.difference == pytest.approx(float(np.mean(b - a)))
    assert got.verdict == ("lower" if want.high < 0 else "no verdict")


@pytest.mark.parametrize("method, n", [("t", 3), ("t", 5), ("bootstrap", 30)])
def test_simulated_nulls_give_the_nominal_error_rate(method: str, n: int) -> None:
    """No true difference, correlated arms (shared seed effects): a verdict in about 5 % of
    experiments. Exact for the t-interval on normal data at any n; the percentile bootstrap
    is liberal at small n (13 % at n = 8), so it is checked at n = 30 only."""
    rng = np.random.default_rng(1)
    trials = 4000 if method == "t" else 600
    calls = 0
    for _ in range(trials):
        seed_effect = rng.normal(0, 1.0, n)
        a = seed_effect + rng.normal(0, 0.3, n)
        b = seed_effect + rng.normal(0, 0.3, n)
        calls += (
            paired_difference(a, b, method=method, seed=int(rng.integers(1 << 30))).verdict
            != "no verdict"
        )
    rate = calls / trials
    bound = 3 * np.sqrt(0.05 * 0.95 / trials)  # three binomial standard errors
    slack = 0.0 if method == "t" else 0.02  # the bootstrap's small-sample excess
    assert -bound < rate - 0.05 < bound + slack, rate


def test_a_real_difference_is_found_and_signed() -> None:
    rng = np.random.default_rng(2)
    found = [
        paired_difference(a, a - 1.0 + rng.normal(0, 0.3, 5)).verdict
        for a in rng.normal(0, 1.0, (200, 5))
    ]
    assert found.count("lower") / len(found) > 0.95 and "higher" not in found


def test_summary_uses_the_sample_standard_deviation() -> None:
    s = summarize([1.0, 2.0, 4.0])
    assert s.mean == pytest.approx(7 / 3)
    assert s.sd == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert s.sem == pytest.approx(s.sd / np.sqrt(3)) and s.n == 3


@pytest.mark.parametrize(
    "a, b, match",
    [
        ([1.0], [2.0], "at least 2 finite values"),
        ([1.0, np.nan], [2.0, 3.0], "at least 2 finite values"),
        ([1.0, 2.0], [2.0, 3.0, 4.0], "the same replicates"),
    ],
)
def test_bad_replicates_are_refused(a, b, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        paired_difference(a, b)


def test_check_verdicts_separates_a_reversal_from_a_lost_verdict() -> None:
    pairs = [(a, b) for a in VERDICTS for b in VERDICTS]
    stated = {i: a for i, (a, _) in enumerate(pairs)}
    differ, reverse = check_verdicts(stated, {i: b for i, (_, b) in enumerate(pairs)})
    assert sorted(differ) == [i for i, (a, b) in enumerate(pairs) if a != b]
    assert sorted(reverse) == [pairs.index(("lower", "higher")), pairs.index(("higher", "lower"))]
    with pytest.raises(KeyError, match="did not compute"):
        check_verdicts({"x": "lower"}, {})
    with pytest.raises(ValueError, match="must be one of"):
        check_verdicts({"x": "better"}, {"x": "better"})


def test_a_rerun_on_other_rounding_loses_verdicts_but_does_not_reverse_them() -> None:
    # a true effect near the edge of detection, re-measured with a 1 % perturbation (another
    # CPU's rounding): verdicts move in and out of "no verdict", never to the opposite sign
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1.0, (400, 3))
    b = a - 0.5 + rng.normal(0, 0.3, (400, 3))
    moved = b * (1 + rng.normal(0, 0.01, b.shape))
    stated = {i: paired_difference(a[i], b[i]).verdict for i in range(len(a))}
    rerun = {i: paired_difference(a[i], moved[i]).verdict for i in range(len(a))}
    differ, reverse = check_verdicts(stated, rerun)
    assert differ and not reverse
