"""The 8-Gaussians evaluator: draws shared by the arms of one replicate and not across
replicates, its numbers against oracle.excess_risk on draws built by hand, the curves read back
from a run's history, and train_run using it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_diffusion import config, paths
from mtl_diffusion.data import load_dataset
from mtl_diffusion.known_answer import (
    EVAL_POINTS,
    EVAL_SEED,
    eval_timesteps,
    excess_curves,
    excess_risk_evaluator,
    measure,
    optimal_denoiser,
)
from mtl_diffusion.oracle import excess_risk
from mtl_diffusion.runs import sample_evaluator, train_run
from mtl_diffusion.train import History

TOY = {"data.name": "toy:8gaussians", "model.arch": "mlp"}


class Scaled(torch.nn.Module):
    """A fixed denoiser: c * x_t (one parameter, so that it has a device)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(c))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.c * x


def test_eval_timesteps_are_bin_centres() -> None:
    cfg = config.load("smoke", TOY)
    assert eval_timesteps(cfg) == list(range(25, 1000, 50))
    short = config.load("smoke", TOY | {"diffusion.num_timesteps": 100})
    assert eval_timesteps(short, bins=4) == [12, 37, 62, 87]


def test_evaluator_matches_hand_built_draws_of_the_replicate_seed() -> None:
    cfg = config.load("smoke", TOY, seed=3)
    values = excess_risk_evaluator(cfg)(Scaled(0.5))
    ts = eval_timesteps(cfg)
    g = torch.Generator().manual_seed(EVAL_SEED + 3)  # the documented draws, built by hand
    test = load_dataset("toy:8gaussians", "test")
    x0 = test[torch.randint(len(test), (len(ts) * EVAL_POINTS,), generator=g)]
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor(ts).repeat_interleave(EVAL_POINTS)
    schedule = optimal_denoiser(cfg).schedule
    risk = excess_risk(Scaled(0.5), optimal_denoiser(cfg), schedule, x0, t, noise)
    for i, value in enumerate(ts):
        assert values[f"excess@{value}"] == pytest.approx(risk.excess[i], rel=1e-9)
        assert values[f"distance@{value}"] == pytest.approx(risk.distance[i], rel=1e-9)
    assert values["distance"] == pytest.approx(risk.distance.mean(), rel=1e-9)


def test_arms_of_one_replicate_share_draws_and_replicates_do_not() -> None:
    # A different arm (method, steps) with the same seed gives bitwise the same numbers for
    # the same model; another seed gives other draws, hence other numbers.
    model = Scaled(0.8)
    a = measure(model, config.load("smoke", TOY, seed=0))
    arm = config.load("smoke", TOY | {"mtl.method": "uw", "train.steps": 7}, seed=0)
    b = measure(model, arm)
    c = measure(model, config.load("smoke", TOY, seed=1))
    np.testing.assert_array_equal(a.distance, b.distance)
    assert not np.allclose(a.distance, c.distance)


def test_curves_read_back_from_a_history() -> None:
    history = History(evals=[])
    for step, c in ((10, 0.1), (20, 0.6)):
        values = excess_risk_evaluator(config.load("smoke", TOY))(Scaled(c))
        history.evals.append({"step": step, **values})
    curves = excess_curves(history)
    assert curves.steps.tolist() == [10, 20]
    assert curves.timesteps.tolist() == list(range(25, 1000, 50))
    np.testing.assert_array_equal(curves.at(20), [history.evals[1][f"distance@{t}"]
                                                  for t in curves.timesteps])  # fmt: skip
    by_interval = curves.interval_means([(0, 99), (100, 999)])
    np.testing.assert_allclose(by_interval[:, 0], curves.distance[:, :2].mean(axis=1))
    np.testing.assert_allclose(by_interval[:, 1], curves.distance[:, 2:].mean(axis=1))
    with pytest.raises(ValueError, match="not evaluated"):
        curves.at(15)
    with pytest.raises(ValueError, match="evaluate=True"):
        excess_curves(History())


def test_train_run_records_the_excess_risk_of_the_toy(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path)
    cfg = config.load("smoke", TOY | {"train.steps": 4, "train.eval_every": 2})
    assert sample_evaluator(config.load("smoke", {"data.name": "toy:moons"})) is None
    run = train_run(cfg, "known-answer-test")
    curves = excess_curves(run.history)
    assert curves.steps.tolist() == [2, 4]
    np.testing.assert_allclose(curves.at(4), measure(run.ema_model(), cfg).distance, rtol=1e-6)
