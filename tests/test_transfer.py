"""Negative transfer: specialist configs, the hybrid sampler, the gaps' arithmetic and signs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from mtl_diffusion.builders import schedule_from_config
from mtl_diffusion.clustering import timestep_clusters
from mtl_diffusion.config import load
from mtl_diffusion.runs import generate
from mtl_diffusion.train import Trainer
from mtl_diffusion.transfer import (
    TransferResult,
    hybrid_generate,
    interval_loss,
    mtl_config,
    negative_transfer_gap,
    specialist_config,
    specialist_configs,
)

INTERVALS = timestep_clusters(1000, 5)


class Affine(nn.Module):
    """A cheap deterministic denoiser whose output depends on x_t and t: w * x + c * t / T."""

    def __init__(self, w: float, c: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.w * x + self.c * (t.float() / 1000).view(-1, 1, 1, 1)


class Recording(Affine):
    """Affine, logging every call's timestep and input."""

    def __init__(self, w: float, c: float) -> None:
        super().__init__(w, c)
        self.calls: list[tuple[int, Tensor]] = []

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        assert bool((t == t[0]).all())  # the samplers move all samples in lockstep
        self.calls.append((int(t[0]), x.clone()))
        return super().forward(x, t)


def ddim_steps_by_hand(T: int, steps: int) -> list[int]:
    """Evenly spaced from T - 1 to 0, rounded half away from zero (the values are positive)."""
    return [int(np.floor((T - 1) * (1 - i / (steps - 1)) + 0.5)) for i in range(steps)]


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_hybrid_with_one_model_everywhere_is_the_plain_sampler(sampler: str) -> None:
    cfg = load("smoke", {"eval.sampler": sampler, "eval.sampling_steps": 10})
    model = Affine(0.3, 0.5)
    plain = generate(model, cfg, 7, seed=5)
    every = hybrid_generate(model, {i: model for i in range(5)}, INTERVALS, cfg, 7, seed=5)
    none = hybrid_generate(model, {}, INTERVALS, cfg, 7, seed=5)
    assert torch.equal(every, plain) and torch.equal(none, plain)
    assert not torch.equal(plain, generate(model, cfg, 7, seed=6))  # the seed matters


@pytest.mark.parametrize("interval", [0, 2, 4])
def test_hybrid_routes_the_steps_in_one_interval_to_the_specialist(interval: int) -> None:
    cfg = load("smoke", {"eval.sampler": "ddim", "eval.sampling_steps": 10})
    plain_model = Recording(0.3, 0.5)
    plain = generate(plain_model, cfg, 4, seed=1)
    full, specialist = Recording(0.3, 0.5), Recording(-0.2, 0.1)
    hybrid = hybrid_generate(full, {interval: specialist}, INTERVALS, cfg, 4, seed=1)

    start, end = INTERVALS[interval]
    steps = ddim_steps_by_hand(1000, 10)
    inside = [s for s in steps if start <= s <= end]
    assert inside, "every interval holds some DDIM step at 10 steps"
    assert [t for t, _ in specialist.calls] == inside
    assert [t for t, _ in full.calls] == [s for s in steps if s not in inside]
    # before the specialist's first step the trajectory is the plain one, input for input
    before = steps.index(inside[0])
    for (t_h, x_h), (t_p, x_p) in zip(full.calls[:before], plain_model.calls[:before], strict=True):
        assert t_h == t_p and torch.equal(x_h, x_p)
    assert torch.equal(specialist.calls[0][1], plain_model.calls[before][1])
    assert not torch.allclose(hybrid, plain)


def test_hybrid_restores_training_mode_and_checks_keys() -> None:
    cfg = load("smoke", {"eval.sampling_steps": 3})
    full, specialist = Affine(0.3, 0.5).train(), Affine(0.1, 0.2).train()
    hybrid_generate(full, {1: specialist}, INTERVALS, cfg, 2)
    assert full.training and specialist.training
    with pytest.raises(ValueError, match="interval indices"):
        hybrid_generate(full, {5: specialist}, INTERVALS, cfg, 2)


class TimestepRecorder(nn.Module):
    """A one-convolution denoiser that records the timesteps it is trained on."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if self.training:
            self.seen.append(t.detach().clone())
        return self.conv(x)


@pytest.mark.parametrize("matching, steps", [("steps", 20), ("samples", 4)])
def test_specialist_trains_only_on_its_interval(matching: str, steps: int) -> None:
    base = load("smoke", {"train.steps": 20, "train.batch_size": 64}, seed=3)
    cfg = specialist_config(base, (400, 599), matching)
    assert cfg.train.steps == steps  # samples: 20 steps * 200 / 1000
    assert (cfg.timesteps.t_start, cfg.timesteps.t_end) == (400, 599)
    model = TimestepRecorder()
    Trainer(cfg, model=model).fit()
    t = torch.cat(model.seen)
    assert len(t) == steps * 64
    assert int(t.min()) >= 400 and int(t.max()) <= 599
    assert int(t.min()) < 420 and int(t.max()) > 579  # and spread over it, not a corner


def test_specialist_configs_cover_the_intervals_and_reset_the_method() -> None:
    base = mtl_config(load("smoke", {"train.steps": 50}), "uw")
    assert (base.mtl.method, base.timesteps.sampler) == ("uw", "stratified")
    configs = specialist_configs(base, INTERVALS, "samples")
    assert [(c.timesteps.t_start, c.timesteps.t_end) for c in configs] == INTERVALS
    assert all(c.mtl.method == "vanilla" and c.timesteps.sampler == "uniform" for c in configs)
    assert [c.train.steps for c in configs] == [10] * 5
    for c in configs:  # the EMA keeps as much of the initial weights as the all-task EMA
        assert c.train.ema_decay**c.train.steps == pytest.approx(base.train.ema_decay**50)
    assert specialist_config(base, (0, 199), "steps").train.ema_decay == base.train.ema_decay
    assert mtl_config(base, "vanilla") is base
    with pytest.raises(ValueError, match="matching"):
        specialist_config(base, (0, 199), "epochs")
    with pytest.raises(ValueError, match="interval"):
        specialist_config(base, (900, 1000), "steps")


def test_ntg_sign_convention_on_fake_metrics() -> None:
    # a distance: the hybrid with a better specialist scores lower -> NTG < 0 (negative transfer)
    ntg = negative_transfer_gap(5.0, [4.0, 5.0, 6.5])
    np.testing.assert_allclose(ntg, [-1.0, 0.0, 1.5])
    # a score (higher is better): the hybrid scoring higher is again NTG < 0
    np.testing.assert_allclose(
        negative_transfer_gap(0.8, [0.9, 0.7], higher_is_better=True), [-0.1, 0.1]
    )
    result = TransferResult(
        intervals=[(0, 499), (500, 999)],
        all_task={"fd": 3.0, "fd_pixel": 10.0},
        hybrid=[{"fd": 2.5, "fd_pixel": 12.0}, {"fd": 3.5, "fd_pixel": 9.0}],
        loss_all_task=[0.2, 0.05],
        loss_specialist=[0.15, 0.06],
        samples=torch.zeros(3, 1, 1, 8, 8),
        seconds=0.0,
    )
    np.testing.assert_allclose(result.ntg("fd"), [-0.5, 0.5])
    np.testing.assert_allclose(result.ntg("fd_pixel"), [2.0, -1.0])
    np.testing.assert_allclose(result.loss_gap(), [-0.05, 0.01])
    np.testing.assert_allclose(result.loss_gap(relative=True), [-0.25, 0.2])
    with pytest.raises(ValueError, match="metric"):
        result.ntg("kid")


class Oracle(nn.Module):
    """The exact eps-denoiser for data that is one fixed image x0: eps = (x_t - a x0) / s."""

    def __init__(self, x0: Tensor, alphas_cumprod: Tensor) -> None:
        super().__init__()
        self.x0, self.ab = x0, alphas_cumprod

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        ab = self.ab[t].float().view(-1, 1, 1, 1)
        return (x - ab.sqrt() * self.x0) / (1 - ab).sqrt()


def test_held_out_loss_gap_of_an_oracle_is_zero_and_of_a_zero_model_is_the_noise_power() -> None:
    schedule = schedule_from_config(load("smoke"))
    x0 = torch.rand(1, 1, 8, 8) * 2 - 1
    data = x0.expand(30, 1, 8, 8)
    oracle = Oracle(x0, schedule.alphas_cumprod)
    for interval in INTERVALS:
        loss = interval_loss(oracle, schedule, data, interval, repeats=3, seed=7)
        assert loss < 1e-8
        assert loss - interval_loss(oracle, schedule, data, interval, repeats=3, seed=7) == 0.0
    # a model that always predicts 0 pays E||eps||^2: the mean square of the same seeded noise
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    generator = torch.Generator().manual_seed(7)
    torch.randint(200, 400, (90,), generator=generator)  # the timesteps are drawn first
    noise = torch.randn((90, 1, 8, 8), generator=generator)
    expected = float((noise**2).mean())
    assert interval_loss(zero, schedule, data, (200, 399), repeats=3, seed=7) == pytest.approx(
        expected, rel=1e-6
    )
