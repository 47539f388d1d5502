"""Held-out denoising loss during training: the low-variance primary metric of every notebook.

At each evaluation the EMA denoiser's training loss is measured on the test split at a fixed
grid of timesteps (the midpoints of ``GRID_SIZE`` equal bins of [0, T)) with noise drawn from
``eval_noise_seed(config)``: every arm of a replicate sees the same x_t (common random numbers),
and replicates see different noise, so their spread includes the evaluation's own variance.

    evals = heldout_metrics(model, config)     # {"heldout_loss": ..., "heldout_loss@25": ...}
    steps, values = heldout_series(history, (0, 199))   # inclusive, like every Interval

The second primary metric, the variational bound in bits per dimension on the same test
images and the same per-replicate noise, is ``heldout_bits_per_dim``; one importance proposal
over t (``bits_per_dim_proposal``) is shared by every arm so that they share the draws too.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from mtl_diffusion.builders import dataset_from_config, schedule_from_config
from mtl_diffusion.clustering import Interval
from mtl_diffusion.config import Config, is_smoke
from mtl_diffusion.likelihood import elbo_terms, importance_proposal, timestep_losses
from mtl_diffusion.train import History

GRID_SIZE = 20  # timesteps per evaluation; 50 steps apart at T = 1000
MAX_IMAGES = 1000  # the first images of the test split (the digits have 450)
SMOKE_IMAGES = 64  # under the smoke profiles, which prove code paths and evaluate often
BPD_TIMESTEPS = 16  # importance-sampled transition terms of the bound per image
PROPOSAL_IMAGES = 32  # test images of the exact bound that shapes the shared proposal
EVAL_NOISE_SEED = 2024  # replicate r (config.seed = r) evaluates from EVAL_NOISE_SEED + r
KEY = "heldout_loss"


def eval_noise_seed(config: Config) -> int:
    """The evaluation noise of a replicate: shared by every arm with the same config.seed,
    different across seeds (the samplers' initial noise and the held-out loss's noise)."""
    return EVAL_NOISE_SEED + config.seed


def heldout_grid(T: int) -> list[int]:
    """The fixed timesteps: midpoints of GRID_SIZE equal bins of [0, T) (all of them if T is
    smaller)."""
    size = min(GRID_SIZE, T)
    return [(2 * i + 1) * T // (2 * size) for i in range(size)]


def heldout_metrics(model: nn.Module, config: Config) -> dict[str, float]:
    """Mean held-out loss over the grid ("heldout_loss") and at each grid step
    ("heldout_loss@<t>"), on up to MAX_IMAGES test images (SMOKE_IMAGES under smoke)."""
    images = SMOKE_IMAGES if is_smoke(config.profile) else MAX_IMAGES
    x0 = dataset_from_config(config, "test")[:images]
    schedule = schedule_from_config(config)
    grid = heldout_grid(schedule.T)
    losses = timestep_losses(
        model,
        schedule,
        x0,
        grid,
        prediction=config.diffusion.prediction,
        seed=eval_noise_seed(config),
    ).mean(dim=1)
    per_step = {f"{KEY}@{t}": float(v) for t, v in zip(grid, losses.tolist(), strict=True)}
    return {KEY: float(losses.mean()), **per_step}


def interval_loss(evaluation: dict[str, float], interval: Interval | None = None) -> float:
    """Mean held-out loss over the grid steps inside `interval` (None: all of them)."""
    values = [
        v
        for k, v in evaluation.items()
        if k.startswith(f"{KEY}@")
        and (interval is None or interval[0] <= int(k.split("@")[1]) <= interval[1])
    ]
    if not values:
        raise ValueError(
            f"no held-out loss at a grid step inside {interval} in this evaluation (keys: "
            f"{sorted(evaluation)[:4]}...); was the run evaluated with held-out losses?"
        )
    return sum(values) / len(values)


def heldout_curves(
    histories: list[History], interval: Interval | None = None
) -> tuple[list[int], np.ndarray]:
    """(steps, (runs, evaluations) held-out losses over `interval`) of runs evaluated at the
    same steps (the seeds of one arm)."""
    series = [heldout_series(h, interval) for h in histories]
    steps = series[0][0] if series else []
    if not series or any(s != steps for s, _ in series):
        raise ValueError("heldout_curves needs at least one run, all evaluated at the same steps")
    return steps, np.array([v for _, v in series])


def heldout_series(
    history: History, interval: Interval | None = None
) -> tuple[list[int], list[float]]:
    """(steps, held-out loss over `interval`) of a training History's evaluations."""
    return [int(e["step"]) for e in history.evals], [
        interval_loss(e, interval) for e in history.evals
    ]


def data_levels(config: Config) -> int:
    """Grey levels of the data's grid, for the bound's discrete decoder: 17 for the bundled
    digits (values 0..16), 256 for 8-bit image folders."""
    return 17 if config.data.name == "digits" else 256


def bits_per_dim_proposal(
    reference: nn.Module, config: Config, images: int = PROPOSAL_IMAGES
) -> Tensor:
    """The importance proposal over t shared by every arm: from the exact bound of `reference`
    (e.g. the first seed's baseline) on the first `images` test images (T - 1 terms each)."""
    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    x0 = dataset_from_config(config, "test")[:images]
    terms = elbo_terms(
        reference,
        schedule_from_config(config),
        x0,
        prediction=config.diffusion.prediction,
        levels=data_levels(config),
        seed=eval_noise_seed(config),
    )
    return importance_proposal(terms)


def heldout_bits_per_dim(
    model: nn.Module,
    config: Config,
    proposal: Tensor | None,
    images: int = MAX_IMAGES,
    timesteps: int | None = BPD_TIMESTEPS,
) -> float:
    """The DDPM bound of `model` in bits per dimension, mean over the first `images` test
    images: the sum over t estimated from `timesteps` draws of `proposal` per image (None and
    None: the exact sum over all T - 1 terms), noise from eval_noise_seed(config), so that the
    arms of a replicate share every draw."""
    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    terms = elbo_terms(
        model,
        schedule_from_config(config),
        dataset_from_config(config, "test")[:images],
        prediction=config.diffusion.prediction,
        levels=data_levels(config),
        seed=eval_noise_seed(config),
        timesteps=timesteps,
        proposal=proposal,
    )
    return float(terms.bits_per_dim.mean())
