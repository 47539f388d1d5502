"""Soft interval assignment: probabilities, own-interval frequencies within binomial tolerance,
where the other draws land, and the hard case against the project's samplers."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_diffusion.meme import SoftAssignment, SoftIntervalTimesteps, own_interval_probabilities
from mtl_diffusion.timesteps import StratifiedTimesteps, UniformTimesteps

INTERVALS = [(0, 9), (10, 29), (30, 59), (60, 99)]
T = 100
DRAWS = 20_000


def test_probability_choices() -> None:
    assert own_interval_probabilities(4) == pytest.approx([0.8, 0.4, 0.2, 0.1])
    assert own_interval_probabilities(4, "hard") == [1.0] * 4
    assert own_interval_probabilities(1) == [1.0]  # nothing lies outside a single interval
    assert own_interval_probabilities(2, (0.9, 0.7)) == [0.9, 0.7]
    with pytest.raises(ValueError, match="k = 3"):
        own_interval_probabilities(3, (0.5, 0.5))
    with pytest.raises(ValueError, match=r"probabilities\[1\]"):
        own_interval_probabilities(2, (0.5, 1.5))
    with pytest.raises(ValueError, match="secondary"):
        own_interval_probabilities(2, "soft")


@pytest.mark.parametrize("outside", ["complement", "all"])
def test_own_interval_frequency_is_p_within_binomial_tolerance(outside: str) -> None:
    gen = torch.Generator().manual_seed(0)
    for j, p in enumerate(own_interval_probabilities(4)):
        sampler = SoftIntervalTimesteps(INTERVALS, j, p, outside)
        t = sampler.sample(DRAWS, gen)
        start, end = INTERVALS[j]
        inside = ((t >= start) & (t <= end)).double().mean().item()
        width = end - start + 1
        expected = p if outside == "complement" else p + (1 - p) * width / T
        assert expected == pytest.approx(sampler.own_fraction())
        assert abs(inside - expected) < 4.5 * math.sqrt(expected * (1 - expected) / DRAWS)
        assert int(t.min()) >= 0 and int(t.max()) < T


def test_outside_draws_are_uniform_over_the_other_intervals() -> None:
    gen = torch.Generator().manual_seed(1)
    sampler = SoftIntervalTimesteps(INTERVALS, 1, 0.0)  # always outside (10..29)
    t = sampler.sample(DRAWS, gen)
    counts = torch.bincount(t, minlength=T).double()
    assert counts[10:30].sum() == 0
    others = torch.cat([counts[:10], counts[30:]])
    expected = DRAWS / len(others)
    chi2 = float(((others - expected) ** 2 / expected).sum())  # 79 degrees of freedom
    assert chi2 < 79 + 5 * math.sqrt(2 * 79)


def test_hard_assignment_draws_what_the_project_samplers_draw() -> None:
    for batch in (8, 10):
        hard = SoftAssignment(INTERVALS, "hard")
        t, expert = hard.draw(batch, torch.Generator().manual_seed(2))
        stratified = StratifiedTimesteps(INTERVALS).sample(batch, torch.Generator().manual_seed(2))
        assert torch.equal(t, stratified)
        assert torch.equal(expert, torch.arange(batch) % 4)
    one = SoftIntervalTimesteps(INTERVALS, 2, 1.0).sample(50, torch.Generator().manual_seed(3))
    uniform = UniformTimesteps(T, 30, 59).sample(50, torch.Generator().manual_seed(3))
    assert torch.equal(one, uniform)


def test_soft_assignment_gives_each_expert_its_own_probability() -> None:
    assignment = SoftAssignment(INTERVALS, "secondary")
    t, expert = assignment.draw(4 * 5000, torch.Generator().manual_seed(4))
    for j, p in enumerate(assignment.probabilities):
        mine = t[expert == j]
        start, end = INTERVALS[j]
        inside = ((mine >= start) & (mine <= end)).double().mean().item()
        assert abs(inside - p) < 4.5 * math.sqrt(p * (1 - p) / len(mine))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="covers all"):
        SoftIntervalTimesteps([(0, 99)], 0, 0.5)
    with pytest.raises(ValueError, match="expert"):
        SoftIntervalTimesteps(INTERVALS, 4, 0.5)
    with pytest.raises(ValueError, match="outside"):
        SoftIntervalTimesteps(INTERVALS, 0, 0.5, "nearby")
    with pytest.raises(ValueError, match="batch_size"):
        SoftAssignment(INTERVALS).draw(3, torch.Generator())
