"""MEME experts through the project's Trainer: all in one loop, or one at a time (each Trainer
moves only its own expert, on the timesteps of its soft assignment)."""

from __future__ import annotations

import pytest
import torch

from mtl_diffusion.config import load
from mtl_diffusion.meme import MultiExpertDenoiser
from mtl_diffusion.meme.training import (
    ema_experts,
    expert_trainers,
    experts_from_config,
    joint_trainer,
)

T = 50
INTERVALS = [(0, 19), (20, 49)]
DATA = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def config(**overrides: object):
    base = {
        "diffusion.num_timesteps": T,
        "model.base_channels": 8,
        "model.num_heads": 2,
        "train.steps": 2,
        "train.batch_size": 8,
        "train.checkpoint_every": 0,
        "train.eval_every": 0,
    }
    return load("smoke", {**base, **overrides})


def small(cfg) -> MultiExpertDenoiser:
    return experts_from_config(cfg, INTERVALS, [0.25, 0.75], num_groups=4)


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(module: torch.nn.Module, before: list[torch.Tensor]) -> bool:
    return any(not torch.equal(p, b) for p, b in zip(module.parameters(), before, strict=True))


def test_joint_trainer_trains_every_expert_in_one_loop() -> None:
    cfg = config()
    model = small(cfg)
    before = [snapshot(e) for e in model.experts]
    trainer = joint_trainer(cfg, model, data=DATA)
    batch = trainer.denoising_batch(*trainer.sample_batch())
    assert torch.equal(model.expert_index(batch.t), batch.clusters)  # cluster i = expert i
    history = trainer.fit()
    assert len(history.losses) == 2 and all(map(torch.isfinite, map(torch.tensor, history.losses)))
    assert all(changed(e, b) for e, b in zip(model.experts, before, strict=True))
    assert isinstance(trainer.ema, MultiExpertDenoiser)


def test_expert_trainers_train_one_expert_each_on_its_soft_timesteps() -> None:
    cfg = config()
    model = small(cfg)
    trainers = expert_trainers(cfg, model, probabilities=(0.5, 1.0), data=DATA)
    assert [tr.timesteps.p for tr in trainers] == [0.5, 1.0]
    t = trainers[1].timesteps.sample(200, torch.Generator().manual_seed(1))
    assert int(t.min()) >= 20  # p = 1: its own interval only
    before = [snapshot(e) for e in model.experts]
    trainers[0].fit()
    assert changed(model.experts[0], before[0]) and not changed(model.experts[1], before[1])
    ema = ema_experts(trainers, model)
    assert ema.intervals == model.intervals and ema.experts[0] is trainers[0].ema


def test_bad_setups_are_refused() -> None:
    cfg = config()
    with pytest.raises(ValueError, match="diffusion.num_timesteps"):
        joint_trainer(config(**{"diffusion.num_timesteps": 60}), small(cfg), data=DATA)
    with pytest.raises(ValueError, match="vanilla"):
        expert_trainers(config(**{"mtl.method": "uw"}), small(cfg), data=DATA)
    with pytest.raises(ValueError, match="cover"):
        experts_from_config(cfg, [(0, 19), (20, 39)])
