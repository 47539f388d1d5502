"""Negative transfer between denoising tasks (ANT observation O2): specialists, hybrids, gaps.

A *specialist* for a timestep interval I is trained only on t in I (timesteps.t_start/t_end,
uniform inside). The *hybrid* sampler uses it for t in I and the all-task model elsewhere, from
the same initial noise as the all-task model's own samples (common random numbers). With
quality = -FD (lower distance is better),

    NTG(I) = quality(all-task) - quality(hybrid) = FD(hybrid) - FD(all-task),

so NTG(I) < 0 when swapping in the specialist on I improves the samples: sharing the network
with the other tasks hurt the tasks in I (negative transfer). The cheaper second signal is the
held-out denoising loss on I, loss_gap(I) = L_I(specialist) - L_I(all-task), with the same sign
convention (negative: the specialist denoises I better).

Training budgets on I (the all-task model trains `train.steps` steps on t uniform over 0..T-1):

- matching "steps": the specialist trains as many optimisation steps as the all-task model, so it
  sees T / |I| times as many samples from I (5x for 5 equal intervals). This is our reading of
  the paper's protocol: each interval model is trained with the usual recipe, as single-task
  baselines are in the negative-transfer literature (the exact budget is not stated in what we
  could check).
- matching "samples": the specialist trains steps * |I| / T steps, i.e. the number of samples from
  I the all-task model saw (in expectation), at the same batch size; its EMA decay is raised to
  the power T / |I| so that the EMA, too, averages over as many samples from I.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from mtl_diffusion.builders import dataset_from_config, device_from_config, schedule_from_config
from mtl_diffusion.cache import cache_path, load_or_compute
from mtl_diffusion.clustering import Interval, validate_intervals
from mtl_diffusion.config import Config, apply
from mtl_diffusion.diffusion import Model, Schedule, model_device, per_sample_loss
from mtl_diffusion.evaluation import distances
from mtl_diffusion.progress import progress
from mtl_diffusion.runs import (
    RunResult,
    default_jobs,
    generate,
    train_many,
    train_run,
    worker_pool,
)
from mtl_diffusion.sampling import piecewise_denoiser

MATCHINGS = ("steps", "samples")
# ANT (Go et al. 2023), negative-transfer figure, ADM: NTG in FID per interval of 200 steps from
# low to high t, read off the figure (approximate). Negative, i.e. negative transfer, at high noise.
PAPER_ADM_NTG = (4.5, 0.15, -1.6, -5.9, -7.6)
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class TransferSetup:
    """What one gap measurement needs: the all-task run, one specialist run per interval."""

    all_task: Config
    specialists: tuple[Config, ...]
    intervals: tuple[Interval, ...]


# --- configs ----------------------------------------------------------------------------------
def specialist_config(config: Config, interval: Interval, matching: str) -> Config:
    """`config` (the all-task run) restricted to `interval`, vanilla, with a matched budget."""
    if matching not in MATCHINGS:
        raise ValueError(f"matching must be one of {MATCHINGS}, got {matching!r}")
    T = config.diffusion.num_timesteps
    start, end = (int(v) for v in interval)
    if not 0 <= start <= end < T:
        raise ValueError(f"interval must satisfy 0 <= start <= end <= {T - 1}, got {interval}")
    steps, decay = config.train.steps, config.train.ema_decay
    if matching == "samples":
        fraction = (end - start + 1) / T
        steps = max(1, round(steps * fraction))
        # the EMA spans as many samples from I and keeps as much of the initial weights
        # (decay ** steps) as the all-task model's EMA
        decay = decay ** (1 / fraction)
    return apply(
        config,
        {
            "timesteps.sampler": "uniform",
            "timesteps.t_start": start,
            "timesteps.t_end": end,
            "mtl.method": "vanilla",
            "train.steps": steps,
            "train.ema_decay": decay,
        },
    )


def specialist_configs(
    config: Config, intervals: Sequence[Interval], matching: str
) -> list[Config]:
    """One specialist config per interval (intervals must cover 0..T-1 in order)."""
    pairs = validate_intervals(intervals, config.diffusion.num_timesteps)
    return [specialist_config(config, interval, matching) for interval in pairs]


def mtl_config(config: Config, method: str, num_clusters: int = 5) -> Config:
    """The all-task config trained with MTL `method` on `num_clusters` equal timestep clusters.

    "vanilla" returns `config` unchanged (plain uniform-t training).
    """
    if method == "vanilla":
        return config
    return apply(
        config,
        {
            "mtl.method": method,
            "timesteps.sampler": "stratified",
            "mtl.clustering": "timestep",
            "mtl.num_clusters": num_clusters,
        },
    )


def train_setups(
    setups: Iterable[TransferSetup], name: str, *, jobs: int | None = None
) -> dict[Config, RunResult]:
    """Train every distinct run of `setups` once (cached), MTL and long runs first."""
    configs = {c: None for s in setups for c in (s.all_task, *s.specialists)}
    order = sorted(configs, key=lambda c: (c.mtl.method != "vanilla", c.train.steps), reverse=True)
    return train_keyed({c: c for c in order}, name, jobs=jobs)


def train_keyed(
    configs: Mapping[K, Config], name: str, *, jobs: int | None = None
) -> dict[K, RunResult]:
    """`runs.train_many` (no evaluation during training) over a mapping key -> config."""
    results = train_many(list(configs.values()), name, evaluate=False, jobs=jobs)
    return dict(zip(configs, results, strict=True))


# --- the hybrid sampler ----------------------------------------------------------------------
def hybrid_denoiser(
    all_task_model: Model,
    specialists: Mapping[int, Model],
    intervals: Sequence[Interval],
    T: int,
) -> Model:
    """denoise(x_t, t): `specialists[i]` for t in interval i, `all_task_model` elsewhere."""
    pairs = validate_intervals(intervals, T)
    unknown = sorted(set(specialists) - set(range(len(pairs))))
    if unknown:
        raise ValueError(
            f"specialists keys must be interval indices in 0..{len(pairs) - 1}, got {unknown}"
        )
    models = [specialists.get(i, all_task_model) for i in range(len(pairs))]
    return piecewise_denoiser(pairs, models, T=T)


def hybrid_generate(
    all_task_model: Model,
    specialists: Mapping[int, Model],
    intervals: Sequence[Interval],
    config: Config,
    n: int,
    seed: int | None = None,
) -> Tensor:
    """`runs.generate` with the hybrid denoiser: the same initial noise and sampler for `seed`
    (default: the replicate's, as for the all-task model).

    Module denoisers are put in eval mode while sampling and restored afterwards.
    """
    denoise = hybrid_denoiser(
        all_task_model, specialists, intervals, config.diffusion.num_timesteps
    )
    modules = {
        id(m): m for m in (all_task_model, *specialists.values()) if isinstance(m, nn.Module)
    }
    modes = {key: m.training for key, m in modules.items()}
    for m in modules.values():
        m.eval()
    try:
        return generate(denoise, config, n, seed=seed, device=model_device(all_task_model))
    finally:
        for key, m in modules.items():
            m.train(modes[key])


# --- the gaps --------------------------------------------------------------------------------
def negative_transfer_gap(
    all_task: npt.ArrayLike, hybrid: npt.ArrayLike, *, higher_is_better: bool = False
) -> np.ndarray:
    """NTG = quality(all-task) - quality(hybrid); NTG < 0 means negative transfer.

    For a distance (`higher_is_better=False`, quality = -metric) this is hybrid - all_task.
    """
    a, h = np.asarray(all_task, dtype=np.float64), np.asarray(hybrid, dtype=np.float64)
    return a - h if higher_is_better else h - a


@torch.no_grad()
def interval_loss(
    model: Model,
    schedule: Schedule,
    x0: Tensor,
    interval: Interval,
    *,
    prediction: str = "eps",
    repeats: int = 4,
    seed: int = 0,
) -> float:
    """Mean denoising MSE on the fixed images `x0`, each `repeats` times at t uniform in `interval`.

    t and noise come from a generator seeded with `seed`, so every model sees the same inputs;
    they move to the model's device (``diffusion.model_device``), where the loss is computed.
    """
    start, end = (int(v) for v in interval)
    if not 0 <= start <= end < schedule.T:
        raise ValueError(f"interval must satisfy 0 <= start <= end <= {schedule.T - 1}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    generator = torch.Generator().manual_seed(seed)
    x = x0.repeat((repeats,) + (1,) * (x0.ndim - 1))
    t = torch.randint(start, end + 1, (len(x),), generator=generator)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    device = model_device(model)
    x, t, noise, schedule = x.to(device), t.to(device), noise.to(device), schedule.to(device)
    return float(per_sample_loss(model, schedule, x, t, noise, prediction).mean())


@dataclass
class TransferResult:
    """Gaps of one all-task model against one specialist per interval (index = interval)."""

    intervals: list[Interval]
    all_task: dict[str, float]  # fd, fd_pixel of the all-task model's samples
    hybrid: list[dict[str, float]]  # the same for the hybrid with the specialist on interval i
    loss_all_task: list[float]  # held-out loss on interval i of the all-task model
    loss_specialist: list[float]  # ... and of the specialist for interval i
    samples: Tensor  # (1 + k, m, ...): the first m samples, all-task then hybrid i
    seconds: float

    def ntg(self, metric: str = "fd") -> np.ndarray:
        """NTG per interval for a distance metric (fd or fd_pixel): negative = negative transfer."""
        if metric not in self.all_task:
            raise ValueError(f"metric must be one of {sorted(self.all_task)}, got {metric!r}")
        hybrid = [h[metric] for h in self.hybrid]
        return negative_transfer_gap(self.all_task[metric], hybrid)

    def loss_gap(self, relative: bool = False) -> np.ndarray:
        """L_I(specialist) - L_I(all-task) per interval (relative: divided by L_I(all-task))."""
        spec, full = np.asarray(self.loss_specialist), np.asarray(self.loss_all_task)
        return (spec - full) / full if relative else spec - full


def transfer_gaps(
    all_task: Model,
    specialists: Sequence[Model],
    intervals: Sequence[Interval],
    config: Config,
    *,
    num_samples: int,
    loss_repeats: int = 4,
    keep_samples: int = 20,
) -> TransferResult:
    """Sample the all-task model and the k hybrids; held-out losses on every interval.

    The held-out set is the data's test split (fixed t and noise per interval, seeded by the
    interval index); all samplers start from the same initial noise. Distances as in
    ``evaluation.distances``.
    """
    start_time = time.perf_counter()
    pairs = validate_intervals(intervals, config.diffusion.num_timesteps)
    if len(specialists) != len(pairs):
        raise ValueError(f"need one specialist per interval ({len(pairs)}), got {len(specialists)}")
    schedule = schedule_from_config(config)
    test = dataset_from_config(config, "test")
    prediction = config.diffusion.prediction
    base = generate(all_task, config, num_samples)
    kept, hybrid = [base[:keep_samples]], []
    loss_full, loss_spec = [], []
    for i, (interval, specialist) in enumerate(zip(pairs, specialists, strict=True)):
        samples = hybrid_generate(all_task, {i: specialist}, pairs, config, num_samples)
        hybrid.append(distances(samples, config))
        kept.append(samples[:keep_samples])
        options: dict[str, Any] = {"prediction": prediction, "repeats": loss_repeats, "seed": i}
        loss_full.append(interval_loss(all_task, schedule, test, interval, **options))
        loss_spec.append(interval_loss(specialist, schedule, test, interval, **options))
    return TransferResult(
        intervals=pairs,
        all_task=distances(base, config),
        hybrid=hybrid,
        loss_all_task=loss_full,
        loss_specialist=loss_spec,
        samples=torch.stack(kept),
        seconds=time.perf_counter() - start_time,
    )


def measure_transfer(
    setup: TransferSetup, *, name: str, num_samples: int | None = None, loss_repeats: int = 4
) -> TransferResult:
    """`transfer_gaps` of trained runs, cached; the runs load from `train_run`'s cache `name`."""
    config = setup.all_task
    n = config.eval.num_samples if num_samples is None else num_samples
    pairs = validate_intervals(setup.intervals, config.diffusion.num_timesteps)

    def compute() -> TransferResult:
        device = device_from_config(config)
        full = train_run(config, name, evaluate=False).ema_model(device)
        specs = [train_run(c, name, evaluate=False).ema_model(device) for c in setup.specialists]
        return transfer_gaps(full, specs, pairs, config, num_samples=n, loss_repeats=loss_repeats)

    extra = _measure_extra(setup, n, loss_repeats)
    return load_or_compute(config, compute, name=f"{name}-gaps", extra=extra)


def measure_many(
    setups: Mapping[K, TransferSetup],
    *,
    name: str,
    num_samples: int | None = None,
    loss_repeats: int = 4,
    jobs: int | None = None,
) -> dict[K, TransferResult]:
    """`measure_transfer` for every setup; uncached ones `jobs` at a time in 1-thread workers."""
    jobs = default_jobs() if jobs is None else jobs
    options: dict[str, Any] = {"name": name, "num_samples": num_samples}
    options["loss_repeats"] = loss_repeats
    missing = [key for key, setup in setups.items() if not _cached(setup, **options)]
    if jobs > 1 and len(missing) > 1:
        with worker_pool(jobs) as pool:
            futures = [pool.submit(measure_transfer, setups[key], **options) for key in missing]
            for future in progress(as_completed(futures), total=len(futures), desc="gaps"):
                future.result()  # surface the first error at once
    return {key: measure_transfer(setup, **options) for key, setup in setups.items()}


def _measure_extra(setup: TransferSetup, num_samples: int, loss_repeats: int) -> dict[str, Any]:
    return {
        "specialists": [c.to_dict() for c in setup.specialists],
        "intervals": [list(i) for i in setup.intervals],
        "num_samples": num_samples,
        "loss_repeats": loss_repeats,
    }


def _cached(setup: TransferSetup, *, name: str, num_samples: int | None, loss_repeats: int) -> bool:
    n = setup.all_task.eval.num_samples if num_samples is None else num_samples
    extra = _measure_extra(setup, n, loss_repeats)
    return cache_path(setup.all_task, f"{name}-gaps", extra).exists()
