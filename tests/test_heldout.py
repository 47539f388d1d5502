"""Held-out loss during training: against a direct computation, common noise within a
replicate, different noise across replicates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_diffusion.builders import dataset_from_config, schedule_from_config
from mtl_diffusion.config import load
from mtl_diffusion.diffusion import per_sample_loss
from mtl_diffusion.heldout import (
    EVAL_NOISE_SEED,
    SMOKE_IMAGES,
    bits_per_dim_proposal,
    eval_noise_seed,
    heldout_bits_per_dim,
    heldout_curves,
    heldout_grid,
    heldout_metrics,
    heldout_series,
    interval_loss,
)
from mtl_diffusion.likelihood import elbo_terms
from mtl_diffusion.runs import initial_noise, sample_evaluator
from mtl_diffusion.train import Trainer

TINY = {"train.steps": 4, "train.batch_size": 8, "train.eval_every": 2, "model.base_channels": 8}


def test_the_grid_is_the_bin_midpoints() -> None:
    assert heldout_grid(1000) == list(range(25, 1000, 50))
    assert heldout_grid(5) == [0, 1, 2, 3, 4]


def test_metrics_equal_a_direct_computation() -> None:
    cfg = load("smoke", TINY, seed=3)
    model = Trainer(cfg).ema.eval()
    got = heldout_metrics(model, cfg)
    x0 = dataset_from_config(cfg, "test")[:SMOKE_IMAGES]  # the first images, under smoke
    schedule = schedule_from_config(cfg)
    generator = torch.Generator().manual_seed(EVAL_NOISE_SEED + 3)
    want = {}
    with torch.no_grad():
        for t in heldout_grid(schedule.T):  # one noise draw per timestep, in grid order
            noise = torch.randn(x0.shape, generator=generator)
            steps = torch.full((len(x0),), t)
            want[t] = per_sample_loss(model, schedule, x0, steps, noise, "eps").mean().item()
    for t, value in want.items():
        assert got[f"heldout_loss@{t}"] == pytest.approx(value, rel=1e-5)
    assert got["heldout_loss"] == pytest.approx(sum(want.values()) / len(want), rel=1e-5)
    low = [v for t, v in want.items() if t <= 199]
    assert interval_loss(got, (0, 199)) == pytest.approx(sum(low) / len(low), rel=1e-5)


def test_the_bound_is_elbo_terms_on_the_test_split_with_the_replicates_noise() -> None:
    cfg = load("smoke", TINY, seed=2)
    model = Trainer(cfg).ema.eval()
    proposal = bits_per_dim_proposal(model, cfg)
    x0 = dataset_from_config(cfg, "test")[:6]
    want = elbo_terms(model, schedule_from_config(cfg), x0, levels=17, seed=EVAL_NOISE_SEED + 2,
                      timesteps=8, proposal=proposal).bits_per_dim.mean()  # fmt: skip
    assert heldout_bits_per_dim(model, cfg, proposal, images=6, timesteps=8) == float(want)
    # both estimate the same expectation: the sampled sum (512 draws per image) and the "exact"
    # one, whose single noise draw per t moves it by about 1 % for this untrained model
    exact = heldout_bits_per_dim(model, cfg, None, images=6, timesteps=None)
    sampled = heldout_bits_per_dim(model, cfg, proposal, images=6, timesteps=512)
    assert sampled == pytest.approx(exact, rel=0.04)
    with pytest.raises(ValueError, match="images"):
        heldout_bits_per_dim(model, cfg, proposal, images=0)


def test_replicates_differ_and_arms_of_a_replicate_share_the_noise() -> None:
    a, b = load("smoke", TINY, seed=1), load("smoke", TINY, seed=1, **{"mtl.method": "vanilla"})
    assert eval_noise_seed(a) == eval_noise_seed(b) != eval_noise_seed(load("smoke", TINY))
    assert torch.equal(initial_noise(a, 4), initial_noise(b, 4))
    assert not torch.equal(initial_noise(a, 4), initial_noise(load("smoke", TINY), 4))


def test_training_records_heldout_curves_without_sampling() -> None:
    cfg = load("smoke", TINY, **{"eval.sample_metrics": False})
    history = Trainer(cfg, evaluate=sample_evaluator(cfg)).fit()
    steps, values = heldout_series(history, (500, 999))
    assert steps == [2, 4] and len(values) == 2
    assert "fd" not in history.evals[0]
    with pytest.raises(ValueError, match="no held-out loss"):
        interval_loss({"step": 2, "fd": 1.0}, (0, 10))


def test_curves_stack_runs_and_refuse_mismatched_steps() -> None:
    cfg = load("smoke", TINY, **{"eval.sample_metrics": False})
    histories = [Trainer(cfg, evaluate=sample_evaluator(cfg)).fit() for _ in range(2)]
    steps, values = heldout_curves(histories)
    assert steps == [2, 4] and values.shape == (2, 2)
    assert np.array_equal(values[0], heldout_series(histories[0])[1])
    histories[1].evals.pop()
    with pytest.raises(ValueError, match="same steps"):
        heldout_curves(histories)
