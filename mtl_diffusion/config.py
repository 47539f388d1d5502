"""Experiment configuration: named profiles expanded into frozen, type-checked dataclasses.

    cfg = load("cpu", seed=3, **{"train.steps": 800})
    cfg = load("smoke", {"model.arch": "dit"})

Overrides use dotted keys ("section.field") or top-level fields ("seed"); an unknown key,
profile or choice raises an error that lists the valid ones.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import shlex
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtl_diffusion.ranges import RANGES, describe, in_range


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"  # digits | toy:8gaussians | toy:moons | ... | folder
    path: str = ""  # image folder when name == "folder"
    image_size: int = 8
    channels: int = 1
    test_fraction: float = 0.1  # folder: share of the images held out as the test split
    max_images: int = 0  # folder: use only the first this many files (0: all), for quick checks


@dataclass(frozen=True)
class DiffusionConfig:
    schedule: str = "linear"  # linear | cosine
    num_timesteps: int = 1000
    prediction: str = "eps"  # eps | x0 | v
    loss_weight: str = "constant"  # constant | min_snr | p2 (per-timestep multiplier of the MSE)
    min_snr_gamma: float = 5.0
    p2_gamma: float = 1.0
    p2_k: float = 1.0


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "unet"  # unet | dit | mlp | mixed (one MixedUNet) | meme (one per interval)
    base_channels: int = 32  # U-Net
    channel_mults: tuple[int, ...] = (1, 2)  # U-Net
    num_res_blocks: int = 1  # U-Net
    attention_levels: tuple[int, ...] = ()  # U-Net levels with self-attention
    dropout: float = 0.0
    hidden_size: int = 128  # DiT / MLP width
    depth: int = 4  # DiT blocks / MLP layers
    num_heads: int = 4
    patch_size: int = 2  # DiT
    routing: str = "none"  # none | dtr | random (Denoising Task Routing masks)
    routing_beta: float = 0.8  # fraction of channels active per task (1 disables routing)
    routing_alpha: float = 4.0  # DTR window speed: > 1 moves slowly at low t, fast at high t
    routing_seed: int = 0  # random routing only
    # route the output layer too: arch (U-Net yes, the authors' rule "between every GroupNorm and
    # the following zero-initialised layer"; DiT no, as the published DiT code) | yes | no
    route_output: str = "arch"
    # mixed / meme (MEME's conv/attention split; the per-expert ratios are not verified): the
    # attention fraction of the mixed blocks, mixed: one value (() = 0.5); meme: one per expert
    # (k = mtl.num_clusters intervals of mtl.clustering), least noisy first (() = 0.25 rising
    # linearly to 0.75). Sized by base_channels, channel_mults, num_res_blocks, num_heads, dropout.
    attention_ratios: tuple[float, ...] = ()
    attention_pool: int = 2  # mixed / meme: the attention branch's token pooling (pool x pool)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    ema_decay: float = 0.995
    ema_warmup: bool = True  # EMA decay min(ema_decay, (1 + s) / (10 + s)) at step s
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    checkpoint_every: int = 250  # 0 disables periodic checkpoints
    eval_every: int = 250  # 0 evaluates only at the end
    log_every: int = 10
    device: str = "cpu"  # cpu | cuda (the paper profile's default)
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + GradScaler, CUDA only)


@dataclass(frozen=True)
class TimestepConfig:
    sampler: str = "uniform"  # uniform | stratified | curriculum | soft (MEME, model.arch=meme)
    t_start: int = 0  # train only on timesteps t_start..t_end (interval specialists)
    t_end: int = -1  # inclusive; -1 means T - 1
    # soft: sample b trains expert b mod k, on its own interval with probability soft_p[j], else
    # outside it (soft_outside: complement = the other intervals | all = any t). () = p_j =
    # 0.8 / 2**j (a secondary source's 0.8, 0.4, 0.2, 0.1 at k = 4; not verified)
    soft_p: tuple[float, ...] = ()
    soft_outside: str = "complement"


@dataclass(frozen=True)
class MTLConfig:
    method: str = "vanilla"  # see mtl_diffusion.mtl.METHODS
    clustering: str = "timestep"  # timestep | snr | affinity
    num_clusters: int = 5
    gradient_path: str = "fast"  # fast (per-layer capture) | vmap (torch.func) | reference
    self_check: bool = True  # gradient methods, fast path: compare with the reference once
    affinity_bins: int = 20  # affinity clustering: task affinity between this many timestep bins
    uw_lr: float = 0.025  # uncertainty weighting: lr of its own parameter group (no weight decay)
    nash_every: int = 25  # NashMTL: re-solve the weights every this many steps (ANT: 25)
    nash_max_norm: float = 1.0  # NashMTL: clip its update at this norm as published; 0 disables
    cagrad_c: float = 0.4  # CAGrad: radius of the conflict-averse ball


@dataclass(frozen=True)
class CurriculumConfig:
    num_clusters: int = 10
    order: str = "easy_first"  # easy_first (high noise first) | hard_first (anti-curriculum)
    pacing: str = "patience"  # patience | fixed
    patience: int = 200  # steps without improvement of the smoothed loss before the next stage
    stage_steps: int = 100  # fixed pacing: steps per stage
    smoothing: float = 0.99  # patience pacing: EMA decay of the training loss (0 = raw loss)
    clustering: str = "timestep"  # timestep (equal widths) | snr (log-SNR interval clustering)


@dataclass(frozen=True)
class EvalConfig:
    num_samples: int = 500
    sampler: str = "ddim"  # ddim | ddpm
    sampling_steps: int = 50  # DDIM steps (DDPM always uses all timesteps)
    eta: float = 0.0
    sample_batch: int = 0  # samples drawn at a time while evaluating (0: all at once)
    feature_net: str = ""  # folder data: a torch.export (.pt2) or TorchScript file of features
    pixel_size: int = 16  # pixel metrics on images area-downsampled to at most this side
    sample_metrics: bool = True  # False: evaluate the held-out loss only (no sampling)


@dataclass(frozen=True)
class Config:
    profile: str = "cpu"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    timesteps: TimestepConfig = field(default_factory=TimestepConfig)
    mtl: MTLConfig = field(default_factory=MTLConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Stable short hash of every field (used for run folders and caches)."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


CHOICES: dict[str, tuple[str, ...]] = {
    "diffusion.schedule": ("linear", "cosine"),
    "diffusion.prediction": ("eps", "x0", "v"),
    "diffusion.loss_weight": ("constant", "min_snr", "p2"),
    "model.arch": ("unet", "dit", "mlp", "mixed", "meme"),
    "model.routing": ("none", "dtr", "random"),
    "model.route_output": ("arch", "yes", "no"),
    "train.device": ("cpu", "cuda"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "timesteps.sampler": ("uniform", "stratified", "curriculum", "soft"),
    "timesteps.soft_outside": ("complement", "all"),
    "mtl.method": ("vanilla", "uw", "pcgrad", "nash", "mgda", "imtlg", "cagrad", "famo", "dwa"),
    "mtl.clustering": ("timestep", "snr", "affinity"),
    "mtl.gradient_path": ("fast", "vmap", "reference"),
    "curriculum.order": ("easy_first", "hard_first"),
    "curriculum.pacing": ("patience", "fixed"),
    "curriculum.clustering": ("timestep", "snr"),
    "eval.sampler": ("ddim", "ddpm"),
}
TOY_NAMES = ("8gaussians", "moons", "swissroll", "checkerboard")

# GPU, paper-like: an image folder, ADM-sized U-Net or DiT, long runs.
PAPER: dict[str, Any] = {
    "data.name": "folder",
    "data.image_size": 64,
    "data.channels": 3,
    "model.base_channels": 128,
    "model.channel_mults": (1, 2, 3, 4),
    "model.num_res_blocks": 2,
    "model.attention_levels": (2, 3),
    "model.dropout": 0.1,
    "model.hidden_size": 768,
    "model.depth": 12,
    "model.num_heads": 8,  # divides the U-Net widths 256, 384, 512 and the DiT width 768
    "model.patch_size": 4,
    "train.steps": 400_000,
    "train.batch_size": 64,
    "train.lr": 1e-4,
    "train.ema_decay": 0.9999,
    "train.checkpoint_every": 5_000,
    "train.eval_every": 50_000,
    "train.log_every": 100,
    "train.device": "cuda",
    "eval.num_samples": 10_000,
    "eval.sampling_steps": 100,
    "eval.sample_batch": 500,  # 10,000 samples at once would not fit a GPU
}

PROFILES: dict[str, dict[str, Any]] = {
    # Seconds: proves every code path; what CI runs for every notebook.
    "smoke": {
        "model.base_channels": 16,
        "model.hidden_size": 64,
        "model.depth": 2,
        "train.steps": 30,
        "train.batch_size": 64,
        "train.checkpoint_every": 15,
        "train.eval_every": 15,
        "eval.num_samples": 200,
        "eval.sampling_steps": 10,
    },
    # Minutes on a 2-core laptop: the default a reader gets.
    "cpu": {},
    "paper": PAPER,
    # Seconds on a CPU: the paper profile's code path (image folder, RGB, metrics without the
    # digits classifier) with tiny models; what CI runs besides smoke. Needs data.path too.
    "paper-smoke": {
        **PAPER,
        "data.image_size": 16,
        "model.base_channels": 16,
        "model.channel_mults": (1, 2),
        "model.num_res_blocks": 1,
        "model.attention_levels": (1,),
        "model.hidden_size": 64,
        "model.depth": 2,
        "model.num_heads": 4,
        "train.steps": 6,
        "train.batch_size": 16,
        "train.checkpoint_every": 3,
        "train.eval_every": 3,
        "train.log_every": 1,
        "train.device": "cpu",
        "eval.num_samples": 48,
        "eval.sampling_steps": 5,
    },
}
SMOKE_PROFILES = ("smoke", "paper-smoke")


def is_smoke(profile: str) -> bool:
    """Smoke profiles prove a code path in seconds; notebooks assert shapes and finiteness only."""
    return profile in SMOKE_PROFILES


def by_profile(values: Mapping[str, Any], profile: str) -> Any:
    """A notebook's per-profile setting: ``values[profile]``; a smoke profile without an entry
    of its own takes the "smoke" one."""
    if profile in values:
        return values[profile]
    if is_smoke(profile) and "smoke" in values:
        return values["smoke"]
    raise ConfigError(f"no setting for profile {profile!r}; known: {sorted(values)}")


class ConfigError(ValueError):
    """An unknown profile, key or choice, or a value of the wrong type."""


def valid_keys() -> list[str]:
    """Every key an override may use."""
    keys = ["seed"]
    for section in dataclasses.fields(Config):
        if dataclasses.is_dataclass(section.default_factory):  # type: ignore[arg-type]
            sub = section.default_factory  # type: ignore[assignment]
            keys += [f"{section.name}.{f.name}" for f in dataclasses.fields(sub)]
    return keys


def load(profile: str = "cpu", overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> Config:
    """Expand a profile into a Config, then apply overrides (dotted keys or section dicts)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {sorted(PROFILES)}")
    merged: dict[str, Any] = dict(PROFILES[profile])
    for key, value in {**(overrides or {}), **kwargs}.items():
        if isinstance(value, Mapping):
            merged.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            merged[key] = value
    return apply(Config(profile=profile), merged)


def notebook_overrides(scale: Mapping[str, Any], steps: int = 0, extra: str = "") -> dict[str, Any]:
    """What a notebook applies to its profile: its own ``scale``, then its ``steps`` parameter
    (0 keeps the scale's), then its ``config_overrides`` string (see :func:`parse_overrides`)."""
    return {**scale, **({"train.steps": steps} if steps else {}), **parse_overrides(extra)}


def replicate_seeds(profile: str, seed: int, num_seeds: int = 0) -> list[int]:
    """``seed, seed + 1, ...``: ``num_seeds`` of them, or by default 1 under smoke, else 3."""
    if num_seeds < 0:
        raise ConfigError(f"num_seeds must be >= 0 (0: the profile default), got {num_seeds}")
    return list(range(seed, seed + (num_seeds or (1 if is_smoke(profile) else 3))))


def parse_overrides(text: str) -> dict[str, Any]:
    """Dotted-key overrides from one string, as a notebook parameter passes them through
    papermill: ``"data.path=/data/ffhq train.steps=2000 model.channel_mults=(1,2,2)"``.
    Values are Python literals where they parse as one, strings otherwise; keys are checked."""
    overrides: dict[str, Any] = {}
    keys = valid_keys()
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.steps=2000)")
        if key not in keys:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(keys)}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


def apply(config: Config, overrides: Mapping[str, Any]) -> Config:
    """Return a copy of `config` with dotted-key overrides applied and checked."""
    keys = valid_keys()
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in keys:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(keys)}")
        if "." in key:
            section, name = key.split(".", 1)
            owner = getattr(config, section)
            sections.setdefault(section, {})[name] = _coerce(key, type(owner), name, value)
        else:
            top[key] = _coerce(key, Config, key, value)
    for section, values in sections.items():
        top[section] = dataclasses.replace(getattr(config, section), **values)
    result = dataclasses.replace(config, **top)
    validate(result)
    return result


def validate(config: Config) -> None:
    """Check choices and ranges that types alone cannot express."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of {list(allowed)}")
    name = config.data.name
    if config.train.precision == "fp16" and config.train.device != "cuda":
        raise ConfigError(
            "train.precision='fp16' needs train.device='cuda' (fp16 autocast with a GradScaler); "
            "on the CPU use train.precision='bf16'"
        )
    if name == "digits" and (config.data.image_size, config.data.channels) != (8, 1):
        raise ConfigError(
            "data.name='digits' is 8x8 grey: data.image_size must be 8 and data.channels 1 (got "
            f"{config.data.image_size} and {config.data.channels}); use data.name='folder' for "
            "other images"
        )
    if name not in ("digits", "folder") and name.removeprefix("toy:") not in TOY_NAMES:
        allowed = ["digits", "folder"] + [f"toy:{t}" for t in TOY_NAMES]
        raise ConfigError(f"data.name={name!r} is not allowed; choose one of {allowed}")
    for key in RANGES:
        value = _value(config, key)
        for item in value if isinstance(value, tuple) else (value,):
            if not in_range(item, key):
                raise ConfigError(f"{key}={value!r} is out of range: it must be {describe(key)}")
    T = config.diffusion.num_timesteps
    if config.eval.sampling_steps > T:
        raise ConfigError(
            f"eval.sampling_steps={config.eval.sampling_steps} must be <= "
            f"diffusion.num_timesteps={T}"
        )
    start, end = config.timesteps.t_start, config.timesteps.t_end
    end = T - 1 if end == -1 else end
    if not 0 <= start <= end < T:
        raise ConfigError(
            f"timesteps.t_start={start}, timesteps.t_end={config.timesteps.t_end} must satisfy "
            f"0 <= t_start <= t_end <= {T - 1} (t_end=-1 means {T - 1})"
        )
    _validate_mixed(config)


def _validate_mixed(config: Config) -> None:
    """The MEME keys: mixed / meme models, their attention fractions, the soft sampler."""
    m, ts, k = config.model, config.timesteps, config.mtl.num_clusters
    mixed = m.arch in ("mixed", "meme")
    if mixed and config.data.name.startswith("toy:"):
        raise ConfigError(f"model.arch={m.arch!r} is an image model, not for {config.data.name}")
    if mixed and m.routing != "none":
        raise ConfigError(f"model.arch={m.arch!r} has no task routing: use model.routing='none'")
    expected = {"mixed": 1, "meme": k}.get(m.arch)
    if m.attention_ratios and expected is None:
        raise ConfigError(f"model.attention_ratios is for model.arch mixed or meme, not {m.arch!r}")
    if m.attention_ratios and len(m.attention_ratios) != expected:
        what = "one value (mixed)" if m.arch == "mixed" else f"mtl.num_clusters = {k} values"
        raise ConfigError(f"model.attention_ratios={m.attention_ratios} needs () or {what}")
    if m.arch == "meme" and config.mtl.clustering == "affinity":
        raise ConfigError(
            "model.arch='meme' builds its experts' intervals from the config alone: use "
            "mtl.clustering='timestep' or 'snr' (affinity clusters need a training run)"
        )
    if ts.sampler == "soft" and m.arch != "meme":
        raise ConfigError(
            "timesteps.sampler='soft' names each sample's expert: it needs model.arch='meme', "
            f"got {m.arch!r}"
        )
    if ts.soft_p and len(ts.soft_p) != k:
        raise ConfigError(f"timesteps.soft_p={ts.soft_p} needs () or mtl.num_clusters = {k} values")


def _value(config: Config, key: str) -> Any:
    """The value of a dotted key ("section.field") or a top-level field."""
    if "." not in key:
        return getattr(config, key)
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def _coerce(key: str, owner: type, name: str, value: Any) -> Any:
    """Check `value` against the annotated type of owner.name; convert where lossless."""
    expected = typing.get_type_hints(owner)[name]
    origin = typing.get_origin(expected)
    if origin is tuple:
        (item_type, _) = typing.get_args(expected)
        if not isinstance(value, (list, tuple)) or not all(_is(v, item_type) for v in value):
            raise ConfigError(f"{key} expects a tuple of {item_type.__name__}, got {value!r}")
        return tuple(item_type(v) for v in value)
    if not _is(value, expected):
        raise ConfigError(
            f"{key} expects {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    return expected(value)


def _is(value: Any, expected: type) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)
