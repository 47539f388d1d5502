"""A case with a known answer: the 8-Gaussians toy (data.name "toy:8gaussians"), whose optimal
denoiser is exact (:class:`oracle.MixtureDenoiser` over ``data.gaussian_mixture_8()``).

``runs.train_run(config, name)`` (evaluate=True) measures the EMA model's excess risk every
train.eval_every steps with :func:`excess_risk_evaluator`: at EVAL_BINS timesteps (the centres
of equal bins of 0..T-1), EVAL_POINTS draws each, x0 from the test split. The draws depend on
the config's seed only: every arm of one replicate sees the same (x0, t, noise), and different
replicates see different ones. Two estimates of the same quantity are stored per timestep:

- ``excess@t``: MSE(model) - MSE(optimum) on the draws (the definition);
- ``distance@t``: mean || model - optimum ||^2 on the same x_t, its expectation (see oracle.py)
  without the noise of the regression targets: far less Monte Carlo noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from mtl_diffusion.builders import dataset_from_config, schedule_from_config
from mtl_diffusion.clustering import Interval, validate_intervals
from mtl_diffusion.config import Config
from mtl_diffusion.data import gaussian_mixture_8
from mtl_diffusion.oracle import ExcessRisk, MixtureDenoiser, excess_risk, timestep_draws

KNOWN_ANSWER = ("toy:8gaussians",)  # data whose optimal denoiser is exact
EVAL_BINS = 20
EVAL_POINTS = 1000
EVAL_SEED = 4242  # draws of replicate `seed` come from EVAL_SEED + seed
ESTIMATES = ("excess", "distance")


def has_known_answer(config: Config) -> bool:
    return config.data.name in KNOWN_ANSWER


def _check(config: Config) -> None:
    if not has_known_answer(config):
        raise ValueError(f"data.name must be one of {KNOWN_ANSWER}, got {config.data.name!r}")


def optimal_denoiser(config: Config) -> MixtureDenoiser:
    """The exact denoiser of the configured toy, schedule and prediction target."""
    _check(config)
    means, std = gaussian_mixture_8()
    return MixtureDenoiser(
        schedule_from_config(config), means, std, prediction=config.diffusion.prediction
    )


def eval_timesteps(config: Config, bins: int = EVAL_BINS) -> list[int]:
    """The centres of `bins` equal bins of 0..T-1 (T = 1000, 20 bins: 25, 75, ..., 975)."""
    T = config.diffusion.num_timesteps
    return sorted({int((i + 0.5) * T / bins) for i in range(bins)})


def eval_draws(config: Config, points: int = EVAL_POINTS):
    """(x0, t, noise) of replicate config.seed: `points` test points per evaluation timestep."""
    _check(config)
    data = dataset_from_config(config, "test")
    return timestep_draws(data, eval_timesteps(config), points, EVAL_SEED + config.seed)


def measure(model: nn.Module, config: Config, points: int = EVAL_POINTS) -> ExcessRisk:
    """The excess risk of `model` at :func:`eval_timesteps` on the draws of config.seed."""
    return _measurer(config, points)(model)


def _measurer(config: Config, points: int):
    draws, optimum = eval_draws(config, points), optimal_denoiser(config)
    schedule, prediction = schedule_from_config(config), config.diffusion.prediction

    def run(model: nn.Module) -> ExcessRisk:
        return excess_risk(model, optimum, schedule, *draws, prediction)

    return run


def excess_risk_evaluator(config: Config):
    """A Trainer evaluator: {"excess@t", "distance@t" for every evaluation t, and their means
    over t as "excess" and "distance"} (the draws are built once)."""
    measure_model = _measurer(config, EVAL_POINTS)

    def evaluate(model: nn.Module) -> dict[str, float]:
        risk = measure_model(model)
        out = {"excess": float(risk.excess.mean()), "distance": float(risk.distance.mean())}
        for t, e, d in zip(risk.timesteps, risk.excess, risk.distance, strict=True):
            out[f"excess@{t}"], out[f"distance@{t}"] = float(e), float(d)
        return out

    return evaluate


@dataclass(frozen=True)
class ExcessCurves:
    """One run's excess risk over training: rows are evaluation steps, columns timesteps."""

    steps: np.ndarray  # (S,)
    timesteps: np.ndarray  # (n_t,)
    excess: np.ndarray  # (S, n_t) MSE - MSE*
    distance: np.ndarray  # (S, n_t) mean || f - f* ||^2

    def values(self, estimate: str = "distance") -> np.ndarray:
        if estimate not in ESTIMATES:
            raise ValueError(f"estimate must be one of {ESTIMATES}, got {estimate!r}")
        return self.excess if estimate == "excess" else self.distance

    def at(self, step: int, estimate: str = "distance") -> np.ndarray:
        """The (n_t,) row evaluated at `step` (which must be an evaluation step)."""
        hits = np.flatnonzero(self.steps == step)
        if not len(hits):
            raise ValueError(f"step {step} was not evaluated; evaluated: {self.steps.tolist()}")
        return self.values(estimate)[hits[0]]

    def interval_means(
        self, intervals: Sequence[Interval], estimate: str = "distance"
    ) -> np.ndarray:
        """(S, k): the mean over the evaluation timesteps inside each interval."""
        pairs = validate_intervals(intervals)
        values = self.values(estimate)
        columns = []
        for start, end in pairs:
            inside = (self.timesteps >= start) & (self.timesteps <= end)
            if not inside.any():
                raise ValueError(f"no evaluation timestep lies in the interval {start}-{end}")
            columns.append(values[:, inside].mean(axis=1))
        return np.stack(columns, axis=1)


def excess_curves(history) -> ExcessCurves:
    """The curves a run's History holds (from :func:`excess_risk_evaluator`)."""
    if not history.evals or "distance" not in history.evals[0]:
        raise ValueError("the run has no excess-risk evaluations: train it with evaluate=True")
    ts = sorted(int(k.split("@")[1]) for k in history.evals[0] if k.startswith("distance@"))
    table = {
        name: np.array([[e[f"{name}@{t}"] for t in ts] for e in history.evals])
        for name in ESTIMATES
    }
    steps = np.array([int(e["step"]) for e in history.evals])
    return ExcessCurves(steps, np.array(ts), table["excess"], table["distance"])
