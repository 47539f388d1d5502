"""Profiles expand into frozen configs; overrides are type-checked; bad keys name the valid ones."""

from __future__ import annotations

import dataclasses

import pytest

from mtl_diffusion import config
from mtl_diffusion.config import ConfigError, load


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper", "paper-smoke"])
def test_profiles_load_and_are_frozen(profile: str) -> None:
    cfg = load(profile)
    assert cfg.profile == profile
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 1  # type: ignore[misc]


def test_profiles_differ_where_they_should() -> None:
    smoke, cpu = load("smoke"), load("cpu")
    assert smoke.train.steps < cpu.train.steps
    assert smoke.model.base_channels < cpu.model.base_channels


def test_dotted_dict_and_keyword_overrides() -> None:
    cfg = load("cpu", {"train.steps": 7}, seed=3, model={"arch": "dit", "channel_mults": [1, 2, 2]})
    assert (cfg.train.steps, cfg.seed, cfg.model.arch) == (7, 3, "dit")
    assert cfg.model.channel_mults == (1, 2, 2)
    assert load("cpu", {"train.lr": 1}).train.lr == 1.0  # int is a lossless float
    assert isinstance(load("cpu", {"train.lr": 1}).train.lr, float)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"train.steps": "100"}, "train.steps expects int"),
        ({"train.steps": 1.5}, "train.steps expects int"),
        ({"train.steps": True}, "train.steps expects int"),
        ({"model.channel_mults": (1, "2")}, "tuple of int"),
        ({"train.stepz": 3}, "valid keys"),
        ({"diffusion.schedule": "quadratic"}, "['linear', 'cosine']"),
        ({"model.arch": "vit"}, "['unet', 'dit', 'mlp', 'mixed', 'meme']"),
        ({"data.name": "cifar"}, "toy:8gaussians"),
        ({"train.steps": 0}, "train.steps=0 is out of range: it must be >= 1"),
        ({"train.ema_decay": 1.0}, "train.ema_decay"),
    ],
)
def test_bad_overrides_raise_with_help(overrides: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load("cpu", overrides)
    assert fragment in str(info.value)


def test_unknown_profile_lists_profiles() -> None:
    with pytest.raises(ConfigError) as info:
        load("gpu")
    for name in ("smoke", "cpu", "paper"):
        assert name in str(info.value)


def test_every_profile_key_is_valid() -> None:
    keys = set(config.valid_keys())
    for profile, overrides in config.PROFILES.items():
        assert set(overrides) <= keys, profile


def test_digest_is_stable_and_sensitive() -> None:
    assert load("cpu").digest() == load("cpu").digest()
    assert load("cpu").digest() != load("cpu", seed=1).digest()


def test_overrides_from_a_string() -> None:
    text = "data.path='/data/my faces' train.steps=2000 model.channel_mults=(1,2,2) seed=3"
    parsed = config.parse_overrides(text)
    assert parsed == {
        "data.path": "/data/my faces",
        "train.steps": 2000,
        "model.channel_mults": (1, 2, 2),
        "seed": 3,
    }
    cfg = load("paper", parsed)
    assert (cfg.data.path, cfg.train.steps, cfg.seed) == ("/data/my faces", 2000, 3)
    assert config.parse_overrides("train.device=cpu") == {"train.device": "cpu"}  # bare string
    assert config.parse_overrides("  ") == {}


@pytest.mark.parametrize(
    ("text", "fragment"), [("train.steps", "not key=value"), ("train.stepz=3", "valid keys")]
)
def test_bad_override_strings_raise_with_help(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        config.parse_overrides(text)


def test_notebook_overrides_apply_scale_then_steps_then_the_string() -> None:
    scale = {"train.steps": 500, "train.lr": 0.01}
    assert config.notebook_overrides(scale) == scale
    assert config.notebook_overrides(scale, 0, "train.lr=0.5") == {
        "train.steps": 500,
        "train.lr": 0.5,
    }
    assert config.notebook_overrides(scale, 20, "train.steps=30")["train.steps"] == 30
    assert config.notebook_overrides(scale, 20)["train.steps"] == 20


def test_paper_smoke_is_the_paper_profile_shrunk_onto_the_cpu() -> None:
    paper, small = load("paper").to_dict(), load("paper-smoke").to_dict()
    shrunk = {key for key in config.PROFILES["paper-smoke"] if key not in config.PAPER}
    shrunk |= {k for k, v in config.PROFILES["paper-smoke"].items() if config.PAPER.get(k) != v}
    for key in config.valid_keys():
        if key == "seed" or key in shrunk:
            continue
        section, name = key.split(".")
        assert small[section][name] == paper[section][name], key
    assert small["data"]["name"] == "folder" and small["data"]["channels"] == 3
    assert small["train"]["device"] == "cpu" and small["train"]["steps"] < 10
    assert small["model"]["attention_levels"], "the paper path includes attention"


def test_smoke_profiles_and_per_profile_settings() -> None:
    assert [p for p in config.PROFILES if config.is_smoke(p)] == ["smoke", "paper-smoke"]
    values = {"smoke": 1, "cpu": 2, "paper": 3}
    picked = [config.by_profile(values, p) for p in ("smoke", "cpu", "paper", "paper-smoke")]
    assert picked == [1, 2, 3, 1]
    assert config.by_profile({**values, "paper-smoke": 4}, "paper-smoke") == 4
    with pytest.raises(ConfigError, match="no setting for profile 'paper'"):
        config.by_profile({"smoke": 1, "cpu": 2}, "paper")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"data.test_fraction": 1.0}, "data.test_fraction"),
        ({"data.max_images": -1}, "data.max_images"),
        ({"eval.pixel_size": 0}, "eval.pixel_size"),
    ],
)
def test_data_and_eval_ranges(overrides: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load("paper", overrides)


def test_replicate_seeds() -> None:
    assert config.replicate_seeds("paper-smoke", 4) == [4]
    assert config.replicate_seeds("smoke", 4) == [4]
    assert config.replicate_seeds("cpu", 4) == [4, 5, 6]
    assert config.replicate_seeds("paper", 0, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="num_seeds"):
        config.replicate_seeds("cpu", 0, -1)
