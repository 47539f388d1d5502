"""Settings of one contrastive run and of the shared score network, per profile.

    cfg = ssl_config("cpu", method="vicreg", weight_rule="abs_diff", seed=2)

A frozen dataclass beside the project Config (which describes diffusion runs): it is hashed
into the cache key through `load_or_compute(..., extra=asdict(cfg))`. ScoreCL always runs on
the bundled digits (k-NN needs labels); the profile sets the budget (a smoke profile without
settings of its own takes smoke's).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mtl_diffusion import config as project_config
from mtl_diffusion.config import Config
from mtl_diffusion.scorecl.augment import check_strengths
from mtl_diffusion.scorecl.knn import VOTES
from mtl_diffusion.scorecl.losses import LOSSES
from mtl_diffusion.scorecl.weights import DEFAULT_FLOOR, WEIGHT_RULES

DEFAULT_AUGMENT = (
    ("affine", 1.0),
    ("erase", 0.5),
    ("blur", 0.5),
    ("contrast", 0.5),
    ("noise", 0.5),
)


@dataclass(frozen=True)
class SSLConfig:
    profile: str = "cpu"
    seed: int = 0
    method: str = "simclr"  # simclr | simsiam | vicreg | wmse
    weight_rule: str = "none"  # none (plain loss) | abs_diff (ScoreCL)
    weight_floor: float = DEFAULT_FLOOR  # smallest pair weight (see weights.py)
    steps: int = 400  # AdamW steps of one contrastive run
    batch_size: int = 128  # positive pairs per step
    lr: float = 2e-3  # AdamW, cosine decay to 0
    weight_decay: float = 1e-4
    feature_dim: int = 64  # encoder output (what k-NN sees)
    hidden_dim: int = 128  # projector hidden width
    proj_dim: int = 32  # projector output (what the loss sees)
    temperature: float = 0.5  # SimCLR
    augment: tuple[tuple[str, float], ...] = DEFAULT_AUGMENT  # (type, strength) pairs
    knn_k: int = 20
    knn_vote: str = "weighted"  # weighted | majority
    knn_temperature: float = 0.07
    score_t: int = 20  # timestep of the score value S(v) = ||s_theta(v, t)||
    score_t_max: int = 199  # the score network trains on t in [0, score_t_max]
    score_steps: int = 600  # score network training steps
    score_channels: int = 8  # score network U-Net base channels
    score_batch_size: int = 128  # score network training batch
    score_seed: int = 0

    def __post_init__(self) -> None:
        choices = {"method": LOSSES, "weight_rule": WEIGHT_RULES, "knn_vote": VOTES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.profile not in project_config.PROFILES:
            raise ValueError(f"profile must be one of {sorted(project_config.PROFILES)}")
        for name in ("steps", "batch_size", "feature_dim", "hidden_dim", "proj_dim", "knn_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.method == "wmse" and self.batch_size <= self.proj_dim:
            raise ValueError("W-MSE whitens the batch: batch_size must exceed proj_dim")
        if not 0 <= self.score_t <= self.score_t_max < 1000:
            raise ValueError(
                f"score_t={self.score_t}, score_t_max={self.score_t_max} must satisfy "
                "0 <= score_t <= score_t_max < 1000"
            )
        check_strengths(dict(self.augment))

    @property
    def strengths(self) -> dict[str, float]:
        return dict(self.augment)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {
        "steps": 10,
        "batch_size": 48,
        "proj_dim": 16,
        "hidden_dim": 64,
        "feature_dim": 32,
        "score_steps": 30,
        "score_channels": 8,
    },
    "cpu": {},
    "paper": {"steps": 2000, "score_steps": 3000, "score_channels": 32},
}


def ssl_config(profile: str = "cpu", **overrides: Any) -> SSLConfig:
    """The profile's settings with `overrides` (field=value) applied; unknown fields raise."""
    if profile not in project_config.PROFILES:
        allowed = sorted(project_config.PROFILES)
        raise ValueError(f"profile must be one of {allowed}, got {profile!r}")
    names = {f.name for f in dataclasses.fields(SSLConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown SSLConfig fields {sorted(unknown)}; valid: {sorted(names)}")
    settings = project_config.by_profile(PROFILE_SETTINGS, profile)
    return SSLConfig(profile=profile, **{**settings, **overrides})


def score_network_config(cfg: SSLConfig) -> Config:
    """Project Config of the score network: an epsilon-prediction U-Net on the digits, trained
    by the project's Trainer on timesteps 0..score_t_max only (ScoreCL reads it at small t)."""
    overrides = {
        "data.name": "digits",
        "data.image_size": 8,
        "data.channels": 1,
        "diffusion.schedule": "linear",
        "diffusion.prediction": "eps",
        "diffusion.loss_weight": "constant",
        "diffusion.num_timesteps": 1000,
        "model.arch": "unet",
        "model.base_channels": cfg.score_channels,
        "model.channel_mults": (1, 2),
        "model.num_res_blocks": 1,
        "model.attention_levels": (),
        "model.dropout": 0.0,
        "model.routing": "none",
        "timesteps.sampler": "uniform",
        "timesteps.t_start": 0,
        "timesteps.t_end": cfg.score_t_max,
        "train.steps": cfg.score_steps,
        "train.batch_size": 128,
        "train.lr": 1e-3,
        "train.ema_decay": 0.995,
        "train.checkpoint_every": 0,
        "train.eval_every": 0,
    }
    return project_config.load(cfg.profile, overrides, seed=cfg.score_seed)
