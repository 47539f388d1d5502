"""The allowed range of every numeric config field, checked when a config is loaded.

A range is (low, high, low_open, high_open); None is unbounded. Floats must also be finite.
`describe(key)` gives the range in words, as the error messages state it;
`python -m mtl_diffusion.ranges` prints every key with its range.
"""

from __future__ import annotations

import math
from typing import Any

Range = tuple[float | None, float | None, bool, bool]
INF = None
MAX_SEED = 2**63 - 1

RANGES: dict[str, Range] = {
    "seed": (0, MAX_SEED, False, False),
    "data.image_size": (1, INF, False, False),
    "data.channels": (1, INF, False, False),
    "data.test_fraction": (0.0, 1.0, True, True),
    "data.max_images": (0, INF, False, False),
    "diffusion.num_timesteps": (2, INF, False, False),
    "diffusion.min_snr_gamma": (0.0, INF, True, False),
    "diffusion.p2_gamma": (0.0, INF, False, False),
    "diffusion.p2_k": (0.0, INF, True, False),
    "model.base_channels": (1, INF, False, False),
    "model.channel_mults": (1, INF, False, False),  # every entry
    "model.num_res_blocks": (1, INF, False, False),
    "model.attention_levels": (0, INF, False, False),  # every entry
    "model.dropout": (0.0, 1.0, False, True),
    "model.hidden_size": (1, INF, False, False),
    "model.depth": (1, INF, False, False),
    "model.num_heads": (1, INF, False, False),
    "model.patch_size": (1, INF, False, False),
    "model.routing_beta": (0.0, 1.0, True, False),
    "model.routing_alpha": (0.0, INF, True, False),
    "model.routing_seed": (0, MAX_SEED, False, False),
    "model.attention_ratios": (0.0, 1.0, False, False),  # every entry
    "model.attention_pool": (1, INF, False, False),
    "train.steps": (1, INF, False, False),
    "train.batch_size": (1, INF, False, False),
    "train.lr": (0.0, INF, True, False),
    "train.weight_decay": (0.0, INF, False, False),
    "train.ema_decay": (0.0, 1.0, False, True),
    "train.grad_clip": (0.0, INF, False, False),
    "train.checkpoint_every": (0, INF, False, False),
    "train.eval_every": (0, INF, False, False),
    "train.log_every": (1, INF, False, False),
    "timesteps.t_start": (0, INF, False, False),
    "timesteps.t_end": (-1, INF, False, False),
    "timesteps.soft_p": (0.0, 1.0, False, False),  # every entry
    "mtl.num_clusters": (1, INF, False, False),
    "mtl.affinity_bins": (1, INF, False, False),
    "mtl.uw_lr": (0.0, INF, True, False),
    "mtl.nash_every": (1, INF, False, False),
    "mtl.nash_max_norm": (0.0, INF, False, False),
    "mtl.cagrad_c": (0.0, INF, False, False),
    "curriculum.num_clusters": (1, INF, False, False),
    "curriculum.patience": (1, INF, False, False),
    "curriculum.stage_steps": (1, INF, False, False),
    "curriculum.smoothing": (0.0, 1.0, False, True),
    "eval.num_samples": (4, INF, False, False),  # precision/recall with k = 3 need 4
    "eval.sampling_steps": (1, INF, False, False),
    "eval.sample_batch": (0, INF, False, False),  # 0: all at once
    "eval.eta": (0.0, 1.0, False, False),
    "eval.pixel_size": (1, INF, False, False),
}


def describe(key: str) -> str:
    """The range of `key` in words, e.g. "in (0, 1]" or ">= 1"."""
    low, high, low_open, high_open = RANGES[key]
    lo, hi = (v if v is None or isinstance(v, int) else f"{v:g}" for v in (low, high))
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {lo}"
    return f"{'<' if high_open else '<='} {hi}"


def in_range(value: Any, key: str) -> bool:
    """Whether the number `value` (a finite float, or an int) lies in the range of `key`."""
    if isinstance(value, float) and not math.isfinite(value):
        return False
    low, high, low_open, high_open = RANGES[key]
    if low is not None and (value < low or (low_open and value == low)):
        return False
    return high is None or not (value > high or (high_open and value == high))


if __name__ == "__main__":
    for key in RANGES:
        print(f"{key:28} {describe(key)}")
