"""Where training stops mattering at this budget: one long vanilla run per model size.

A calibration run trains the notebook's model (vanilla, uniform timesteps, no routing, constant
loss weight) for ``calibration_steps`` and records the held-out loss (``heldout.py``) along the
way. Every notebook then states, for its own runs, the fraction of the calibration run's loss
decrease they reach, and compares methods by final quality and by steps to a threshold.

    cal = calibration_run(config)                       # cached; trained once per model size
    fraction_reached(cal_steps, cal_loss, my_final_loss)  # 0.93: 93 % of the decrease
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtl_diffusion.config import Config, apply, is_smoke, load, parse_overrides
from mtl_diffusion.plan import policy
from mtl_diffusion.runs import RunResult, train_run

CPU_STEPS = 3000  # 5x the notebooks' former budget; the curve in each notebook shows the rest
EVALUATIONS = 30  # held-out loss evaluations along the calibration run
SMOKE_EVALUATIONS = 3  # under the smoke profiles, whose curve only proves the code path


def calibration_steps(config: Config) -> int:
    """CPU_STEPS under cpu, twice the configured steps under the smoke profiles, the configured
    steps (the paper's budget) under paper."""
    if is_smoke(config.profile):
        return 2 * config.train.steps
    return CPU_STEPS if config.profile == "cpu" else config.train.steps


def calibration_config(config: Config, steps: int | None = None) -> Config:
    """`config`'s data, model size and optimiser, trained the plain way for `steps`."""
    steps = calibration_steps(config) if steps is None else steps
    smoke = is_smoke(config.profile)
    if steps < 1:
        raise ValueError(f"calibration steps must be >= 1, got {steps}")
    return apply(
        config,
        {
            "seed": 0,
            "mtl.method": "vanilla",
            "timesteps.sampler": "uniform",
            "timesteps.t_start": 0,
            "timesteps.t_end": -1,
            "model.routing": "none",
            "diffusion.loss_weight": "constant",
            "train.steps": steps,
            "train.eval_every": max(steps // (SMOKE_EVALUATIONS if smoke else EVALUATIONS), 1),
            "eval.sample_metrics": False,
        },
    )


def calibration_run(config: Config, steps: int | None = None) -> RunResult:
    """The cached calibration run of `config`'s model size (trained on first use)."""
    return train_run(calibration_config(config, steps), "calibration")


def shared_calibration(profile: str, config_overrides: str = "") -> Config | None:
    """The base config whose calibration run notebooks 02 and 04-06 share under `profile` with
    these overrides (each calls calibration_run on it), or None where missing runs are planned
    as jobs instead of trained here (the paper profile)."""
    base = load(profile, parse_overrides(config_overrides))
    return None if policy(base) == "plan" else base


def train_calibration(base: Config) -> float:
    """Train (or load) `base`'s calibration run on one thread, as a notebook would; seconds."""
    torch.set_num_threads(1)
    return calibration_run(base).history.seconds


def fraction_reached(
    steps: Sequence[int], values: Sequence[float], value: float, strict: bool = True
) -> float:
    """How far `value` has come along the calibration curve's decrease, (v_0 - value) /
    (v_0 - v_end) with v_0 the first and v_end the last value (1: the calibration endpoint;
    above 1: beyond it). A curve that does not decrease raises, or gives nan when not `strict`
    (a smoke calibration of a few steps need not decrease)."""
    v = _curve(steps, values)
    drop = v[0] - v[-1]
    if not drop > 0:
        if not strict:
            return float("nan")
        raise ValueError(f"the calibration curve does not decrease ({v[0]:.4g} -> {v[-1]:.4g})")
    return float((v[0] - value) / drop)


def steps_to_reach(steps: Sequence[int], values: Sequence[float], threshold: float) -> float:
    """First step at which a curve falls to `threshold`, interpolated linearly between
    evaluations; nan when it never does (convergence speed in the papers' sense)."""
    s, v = np.asarray(steps, dtype=np.float64), _curve(steps, values)
    below = np.flatnonzero(v <= threshold)
    if not below.size:
        return float("nan")
    i = int(below[0])
    if i == 0:
        return float(s[0])
    return float(s[i - 1] + (s[i] - s[i - 1]) * (v[i - 1] - threshold) / (v[i - 1] - v[i]))


def plateau_step(steps: Sequence[int], values: Sequence[float], fraction: float = 0.9) -> float:
    """The step at which a curve has made `fraction` of its whole decrease."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    v = _curve(steps, values)
    return steps_to_reach(steps, v, float(v[0] - fraction * (v[0] - v[-1])))


def _curve(steps: Sequence[int], values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) < 2 or len(v) != len(steps) or not np.isfinite(v).all():
        raise ValueError(
            f"a curve needs at least 2 finite values, one per step; got {len(v)} values for "
            f"{len(steps)} steps"
        )
    if np.any(np.diff(np.asarray(steps)) <= 0):
        raise ValueError("a curve's steps must increase")
    return v
