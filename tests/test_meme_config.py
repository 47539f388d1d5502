"""MEME as Config keys: model.arch mixed / meme build what the Config-free constructors build,
the keys are validated, the soft sampler's expert ids reach the model through the Trainer (soft
with p = 1 trains exactly like the hard, stratified loop routed by t), a planned command reads
back to the same Config."""

from __future__ import annotations

import math
import shlex

import pytest
import torch

from mtl_diffusion.builders import model_from_config, timesteps_from_config
from mtl_diffusion.clustering import timestep_clusters
from mtl_diffusion.config import ConfigError, load
from mtl_diffusion.meme import (
    MixedUNet,
    MultiExpertDenoiser,
    SoftAssignment,
    default_ratios,
    mixed_experts,
)
from mtl_diffusion.meme.training import joint_trainer
from mtl_diffusion.plan import command
from mtl_diffusion.train import Trainer
from mtl_diffusion.train.__main__ import config_from_args

T = 40
DATA = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
BASE = {
    "diffusion.num_timesteps": T,
    "model.base_channels": 8,
    "model.num_heads": 2,
    "mtl.num_clusters": 4,
    "train.steps": 3,
    "train.batch_size": 8,
    "train.checkpoint_every": 0,
    "train.eval_every": 0,
}


def cfg(**overrides: object):
    return load("smoke", {**BASE, **overrides})


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_meme_builds_one_mixed_unet_per_interval_of_the_config() -> None:
    config = cfg(**{"model.arch": "meme"})
    torch.manual_seed(5)
    built = model_from_config(config)
    torch.manual_seed(5)
    direct = mixed_experts(
        timestep_clusters(T, 4), default_ratios(4), in_channels=1, base_channels=8,
        channel_mults=(1, 2), num_blocks=1, num_heads=2, pool=2, dropout=0.0,
    )  # fmt: skip
    assert isinstance(built, MultiExpertDenoiser) and built.intervals == direct.intervals
    assert same_weights(built, direct)
    assert [e.ratios[0] for e in built.experts] == default_ratios(4)
    given = model_from_config(cfg(**{"model.arch": "meme", "model.attention_ratios": (0.5,) * 4}))
    assert [e.ratios for e in given.experts] == [(0.5, 0.5)] * 4


def test_mixed_builds_one_mixed_unet() -> None:
    config = cfg(**{"model.arch": "mixed", "model.attention_ratios": (0.25,),
                    "model.attention_pool": 1})  # fmt: skip
    torch.manual_seed(2)
    built = model_from_config(config)
    torch.manual_seed(2)
    direct = MixedUNet(base_channels=8, ratio=0.25, num_heads=2, pool=1, num_timesteps=T)
    assert isinstance(built, MixedUNet) and same_weights(built, direct)
    assert model_from_config(cfg(**{"model.arch": "mixed"})).ratios == (0.5, 0.5)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"model.arch": "meme", "model.attention_ratios": (0.5, 0.5)}, "mtl.num_clusters = 4"),
        ({"model.arch": "mixed", "model.attention_ratios": (0.5, 0.5)}, "one value"),
        ({"model.attention_ratios": (0.5,)}, "mixed or meme"),
        ({"model.arch": "meme", "model.attention_ratios": (0.5, 0.5, 0.5, 1.5)}, "out of range"),
        ({"model.arch": "meme", "mtl.clustering": "affinity"}, "affinity"),
        ({"model.arch": "mixed", "model.routing": "dtr"}, "routing"),
        ({"timesteps.sampler": "soft"}, "model.arch='meme'"),
        ({"model.arch": "meme", "timesteps.sampler": "soft", "timesteps.soft_p": (0.5,)},
         "timesteps.soft_p"),
        ({"model.arch": "meme", "timesteps.soft_outside": "near"}, "soft_outside"),
        ({"model.attention_pool": 0}, "out of range"),
    ],
)  # fmt: skip
def test_bad_meme_keys_are_refused(overrides: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        cfg(**overrides)


def test_the_soft_sampler_of_the_config() -> None:
    sampler = timesteps_from_config(cfg(**{"model.arch": "meme", "timesteps.sampler": "soft"}))
    assert isinstance(sampler, SoftAssignment)
    assert sampler.probabilities == [0.8, 0.4, 0.2, 0.1]  # the secondary source's default
    assert sampler.intervals == timestep_clusters(T, 4)
    given = cfg(**{"model.arch": "meme", "timesteps.sampler": "soft",
                   "timesteps.soft_p": (1.0, 0.5, 0.5, 0.25),
                   "timesteps.soft_outside": "all"})  # fmt: skip
    sampler = timesteps_from_config(given)
    assert sampler.probabilities == [1.0, 0.5, 0.5, 0.25]
    assert all(e.outside == "all" for e in sampler.experts)


def test_the_trainer_passes_the_soft_experts_to_the_model() -> None:
    config = cfg(**{"model.arch": "meme", "timesteps.sampler": "soft",
                    "timesteps.soft_p": (0.0, 0.0, 0.0, 0.0), "train.batch_size": 64})  # fmt: skip
    trainer = Trainer(config, data=DATA)
    drawn = trainer.sample_batch()
    assert len(drawn) == 4  # x0, t, noise, expert
    batch = trainer.denoising_batch(*drawn)
    ids = torch.arange(64) % 4
    assert torch.equal(batch.cond["expert"], ids) and torch.equal(batch.clusters, ids)
    model = trainer.model
    assert (model.expert_index(batch.t) != ids).all()  # p = 0: never the own interval
    with torch.no_grad():
        for p in model.parameters():  # non-zero outputs (the experts start at exactly 0)
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        step = trainer.engine.objective(batch)
        direct = torch.stack([
            ((model.experts[int(e)](batch.x_t[b : b + 1], batch.t[b : b + 1])
              - batch.target[b : b + 1]) ** 2).mean()
            for b, e in enumerate(ids)
        ]).mean()  # fmt: skip
    assert math.isclose(step.stats.loss, float(direct), rel_tol=1e-5)


def test_soft_with_p_one_trains_like_the_hard_loop_routed_by_t() -> None:
    hard = cfg(**{"model.arch": "meme", "timesteps.sampler": "stratified"})
    soft = cfg(
        **{"model.arch": "meme", "timesteps.sampler": "soft", "timesteps.soft_p": (1.0,) * 4}
    )
    a, b = Trainer(hard, data=DATA), Trainer(soft, data=DATA)
    ha, hb = a.fit(), b.fit()
    assert ha.losses == pytest.approx(hb.losses, rel=1e-6)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_joint_trainer_with_soft_probabilities() -> None:
    config = cfg()
    model = mixed_experts(timestep_clusters(T, 4), base_channels=8, num_heads=2)
    trainer = joint_trainer(config, model, probabilities=(0.5,) * 4, data=DATA)
    assert isinstance(trainer.timesteps, SoftAssignment)
    assert "expert" in trainer.denoising_batch(*trainer.sample_batch()).cond


def test_a_planned_meme_command_reads_back_to_the_same_config() -> None:
    config = load("paper", {"model.arch": "meme", "mtl.num_clusters": 4,
                            "model.attention_ratios": (0.2, 0.4, 0.6, 0.8),
                            "timesteps.sampler": "soft", "timesteps.soft_p": (0.9, 0.5, 0.3, 0.1),
                            "model.attention_pool": 4})  # fmt: skip
    line = shlex.split(command(config, "meme"))
    sets = [line[i + 1] for i, a in enumerate(line) if a == "--set"]
    assert config_from_args("paper", sets, None).to_dict() == config.to_dict()
