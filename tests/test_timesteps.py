"""Timestep samplers: the stratified sampler's layout, remainder policy and clusters."""

from __future__ import annotations

import pytest
import torch

from mtl_diffusion import config
from mtl_diffusion.builders import schedule_from_config, timesteps_from_config
from mtl_diffusion.clustering import snr_clusters
from mtl_diffusion.timesteps import StratifiedTimesteps

INTERVALS = [(0, 9), (10, 11), (12, 40), (41, 99)]


@pytest.mark.parametrize(
    ("batch_size", "sizes"),
    [(8, [2, 2, 2, 2]), (11, [3, 3, 3, 2]), (4, [1, 1, 1, 1]), (130, [33, 33, 32, 32])],
)
def test_every_cluster_in_every_batch_with_remainder_policy(batch_size: int, sizes: list[int]):
    sampler = StratifiedTimesteps(INTERVALS)
    assert sampler.chunk_sizes(batch_size) == sizes  # first B mod k clusters get one more
    expected = torch.tensor([b % 4 for b in range(batch_size)])  # interleaved layout
    assert torch.equal(sampler.assignments(batch_size), expected)
    assert torch.bincount(expected).tolist() == sizes
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        t = sampler.sample(batch_size, gen)
        assert t.shape == (batch_size,) and t.dtype == torch.long
        starts = torch.tensor([s for s, _ in INTERVALS])[expected]
        ends = torch.tensor([e for _, e in INTERVALS])[expected]
        assert ((t >= starts) & (t <= ends)).all()  # sample b lies in its cluster


def test_batch_smaller_than_k_raises() -> None:
    with pytest.raises(ValueError, match="batch_size must be >= the number of clusters"):
        StratifiedTimesteps(INTERVALS).chunk_sizes(3)


def test_uniform_inside_each_cluster() -> None:
    sampler = StratifiedTimesteps([(0, 2), (3, 3), (4, 7)])
    t = sampler.sample(30_000, torch.Generator().manual_seed(1))
    counts = torch.bincount(t, minlength=8).double()
    per_chunk = torch.tensor([10_000 / 3] * 3 + [10_000] + [2_500] * 4, dtype=torch.float64)
    assert torch.allclose(counts, per_chunk, rtol=0.06)  # every value of every interval


def test_bad_intervals_raise() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        StratifiedTimesteps([(0, 4), (6, 9)])


@pytest.mark.parametrize("clustering", ["timestep", "snr"])
def test_from_config_builds_the_configured_clusters(clustering: str) -> None:
    cfg = config.load(
        "smoke",
        {"timesteps.sampler": "stratified", "mtl.clustering": clustering, "mtl.num_clusters": 4},
    )
    sampler = timesteps_from_config(cfg)
    assert isinstance(sampler, StratifiedTimesteps) and sampler.num_clusters == 4
    if clustering == "timestep":
        assert [s for s, _ in sampler.intervals] == [0, 250, 500, 750]
    else:
        assert sampler.intervals == snr_clusters(schedule_from_config(cfg), 4)


def test_stratified_needs_the_full_timestep_range() -> None:
    cfg = config.load("smoke", {"timesteps.sampler": "stratified", "timesteps.t_start": 10})
    with pytest.raises(ValueError, match="t_start"):
        timesteps_from_config(cfg)
