"""Every numeric config field has a documented range, enforced when the config is loaded; the
error names the key and the range."""

from __future__ import annotations

import math
import re

import pytest

from mtl_diffusion import config
from mtl_diffusion.config import ConfigError
from mtl_diffusion.ranges import RANGES, describe
from mtl_diffusion.workers import default_jobs

BAD = [
    ("train.lr", 0.0),
    ("train.lr", math.inf),
    ("train.lr", math.nan),
    ("train.lr", -1e-3),
    ("train.grad_clip", -1.0),
    ("train.checkpoint_every", -5),
    ("train.eval_every", -1),
    ("train.weight_decay", math.nan),
    ("train.ema_decay", 1.0),
    ("mtl.uw_lr", 0.0),
    ("mtl.nash_every", 0),
    ("mtl.cagrad_c", -0.1),
    ("eval.eta", math.nan),
    ("eval.eta", 1.5),
    ("eval.num_samples", 1),
    ("eval.sampling_steps", 0),
    ("curriculum.num_clusters", 0),
    ("curriculum.smoothing", 1.0),
    ("seed", 2**64),
    ("seed", -1),
    ("model.routing_beta", 0.0),
    ("model.routing_beta", 1.5),
    ("model.routing_alpha", math.inf),
    ("model.dropout", 1.0),
    ("model.channel_mults", (1, 0)),
    ("diffusion.num_timesteps", 1),
    ("diffusion.min_snr_gamma", 0.0),
    ("data.test_fraction", 1.0),
]


@pytest.mark.parametrize("key, value", BAD)
def test_a_value_out_of_range_is_refused_naming_the_key_and_the_range(key: str, value) -> None:
    expected = rf"^{re.escape(key)}=.* out of range: it must be {re.escape(describe(key))}$"
    with pytest.raises(ConfigError, match=expected):
        config.load("smoke", {key: value})


def test_every_numeric_field_has_a_range_and_every_profile_satisfies_it() -> None:
    cfg = config.Config()
    for key in config.valid_keys():
        value = config._value(cfg, key)
        if isinstance(value, (int, float, tuple)) and not isinstance(value, bool):
            assert key in RANGES, f"{key} has no documented range"
    for profile in config.PROFILES:
        config.load(profile)


def test_sampling_steps_cannot_exceed_the_timesteps() -> None:
    with pytest.raises(ConfigError, match="eval.sampling_steps=2000 must be <= diffusion"):
        config.load("smoke", {"eval.sampling_steps": 2000})


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_jobs_from_the_environment_must_be_a_positive_integer(monkeypatch, value: str) -> None:
    monkeypatch.setenv("MTL_DIFFUSION_JOBS", value)
    with pytest.raises(
        ValueError, match=f"MTL_DIFFUSION_JOBS must be an integer >= 1, got '{value}'"
    ):
        default_jobs()
