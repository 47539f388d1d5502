"""Calibration helpers against closed forms, and the calibration config's plain training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_diffusion.calibration import (
    calibration_config,
    fraction_reached,
    plateau_step,
    steps_to_reach,
)
from mtl_diffusion.config import load


def test_steps_to_reach_interpolates_between_evaluations() -> None:
    assert steps_to_reach([10, 20, 30], [1.0, 0.6, 0.2], 0.4) == pytest.approx(25.0)
    assert steps_to_reach([10, 20, 30], [1.0, 0.6, 0.2], 1.5) == 10.0
    assert math.isnan(steps_to_reach([10, 20, 30], [1.0, 0.6, 0.2], 0.1))


def test_plateau_of_an_exponential_decay_is_its_closed_form() -> None:
    steps = np.arange(0, 20_001, 10)
    values = 0.05 + np.exp(-steps / 1000.0)  # 90 % of the drop to step 20,000
    want = -1000.0 * math.log(1 - 0.9 * (1 - math.exp(-20.0)))
    assert plateau_step(steps, values, 0.9) == pytest.approx(want, abs=0.5)
    assert fraction_reached(steps, values, float(values[0] - 0.5 * (values[0] - values[-1]))) == (
        pytest.approx(0.5)
    )


def test_bad_curves_are_refused() -> None:
    with pytest.raises(ValueError, match="does not decrease"):
        fraction_reached([1, 2], [1.0, 1.0], 0.5)
    assert math.isnan(fraction_reached([1, 2], [1.0, 1.0], 0.5, strict=False))
    with pytest.raises(ValueError, match="finite"):  # not strict about the curve itself
        fraction_reached([1, 2], [1.0, float("nan")], 0.5, strict=False)
    with pytest.raises(ValueError, match="must increase"):
        plateau_step([2, 1], [1.0, 0.5])
    with pytest.raises(ValueError, match="fraction"):
        plateau_step([1, 2], [1.0, 0.5], 0.0)


def test_the_calibration_run_is_plain_training_of_the_same_model() -> None:
    cfg = load(
        "cpu",
        **{
            "mtl.method": "uw",
            "timesteps.sampler": "stratified",
            "model.routing": "dtr",
            "diffusion.loss_weight": "min_snr",
            "seed": 2,
        },
    )
    cal = calibration_config(cfg)
    assert (cal.mtl.method, cal.timesteps.sampler, cal.model.routing) == (
        "vanilla",
        "uniform",
        "none",
    )
    assert cal.diffusion.loss_weight == "constant" and cal.seed == 0
    assert cal.train.steps == 3000 and cal.model.base_channels == cfg.model.base_channels
    assert cal.eval.sample_metrics is False
    assert cal.train.eval_every == 100  # 30 evaluations
    smoke = calibration_config(load("smoke"))
    assert smoke.train.steps == 2 * load("smoke").train.steps
    assert smoke.train.steps // smoke.train.eval_every == 3  # evaluated only to prove the path
