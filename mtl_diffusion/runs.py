"""Cached training runs and sample generation: what notebooks call.

run = train_run(config, "quickstart")      # trains once, then loads from the cache
samples = generate(run.ema_model(), config, 100)
runs = train_many([config_a, config_b], "compare")   # in parallel worker processes

Notebooks that compare arms cache them under one name, ARMS, so that an arm with the same
config in several notebooks (the vanilla arm of 04, 05 and 06) is trained once; under the cpu
profile those three share one schedule, CPU_ARM_SCHEDULE, and `make figures` trains their
vanilla arm (``shared_vanilla_arm``) first, in a slot of its own.
"""

from __future__ import annotations

import shutil
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mtl_diffusion.builders import model_from_config, sample_shape, schedule_from_config
from mtl_diffusion.cache import (
    cache_key,
    cache_path,
    check_writable,
    code_version,
    load_or_compute,
)
from mtl_diffusion.clusters import timesteps_for
from mtl_diffusion.config import Config, load, parse_overrides, replicate_seeds
from mtl_diffusion.diffusion import Model, model_device
from mtl_diffusion.evaluation import check_ready
from mtl_diffusion.evaluation import evaluate as sample_metrics
from mtl_diffusion.heldout import eval_noise_seed, heldout_metrics
from mtl_diffusion.known_answer import excess_risk_evaluator, has_known_answer
from mtl_diffusion.mtl.distributed import current_ranks
from mtl_diffusion.paths import artifacts_dir
from mtl_diffusion.plan import command, policy, refuse_missing
from mtl_diffusion.progress import progress
from mtl_diffusion.repro import environment
from mtl_diffusion.sampling import ddim_sample, ddpm_sample
from mtl_diffusion.train import Evaluator, History, Trainer
from mtl_diffusion.workers import default_jobs, worker_pool

ARMS = "arms"  # the cache name of every notebook's compared runs
# the cpu schedule of the compared runs of notebooks 04, 05 and 06 (held-out loss only)
CPU_ARM_SCHEDULE = {"train.steps": 400, "train.eval_every": 50, "eval.sample_metrics": False}


def shared_vanilla_arm(profile: str, config_overrides: str = "") -> list[Config]:
    """The vanilla arm of notebooks 04, 05 and 06 run with default parameters (one run per
    default replicate seed, cached under ARMS): CPU_ARM_SCHEDULE, then `config_overrides`.
    Under the cpu profile only ([] otherwise: their schedules differ there)."""
    if profile != "cpu":
        return []
    overrides = CPU_ARM_SCHEDULE | parse_overrides(config_overrides)
    return [load(profile, overrides, seed=s) for s in replicate_seeds(profile, 0)]


@dataclass
class RunResult:
    """What a finished run leaves: its config, loss/eval history and final weights."""

    config: Config
    history: History
    ema_state: dict[str, torch.Tensor]
    model_state: dict[str, torch.Tensor]
    environment: dict[str, str] = field(default_factory=dict)

    def ema_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The EMA denoiser, rebuilt from the config on `device`, in eval mode."""
        model = model_from_config(self.config)
        model.load_state_dict(self.ema_state)
        return model.to(device).eval()


def initial_noise(config: Config, n: int, seed: int | None = None) -> torch.Tensor:
    """x_T for `n` samples, the same for every model with the same data shape and seed
    (default: the replicate's, heldout.eval_noise_seed)."""
    seed = eval_noise_seed(config) if seed is None else seed
    return torch.randn(sample_shape(config, n), generator=torch.Generator().manual_seed(seed))


def generate(
    model: nn.Module | Model,
    config: Config,
    n: int,
    *,
    seed: int | None = None,
    progress_bar: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw `n` samples (returned on the CPU) with the configured sampler, from the initial noise
    of `seed` (default: the replicate's, so arms of one replicate share it), on `device`
    (default: the module's, or the CPU for a callable).

    `model` is a denoiser module (in eval mode while sampling) or any `denoise(x_t, t)` callable,
    such as a `piecewise_denoiser` over modules the caller has put in eval mode. With
    eval.sample_batch > 0 the samples are drawn that many at a time (slices of the same initial
    noise; a stochastic sampler's noise then comes from one generator per batch).
    """
    module = model if isinstance(model, nn.Module) else None
    device = model_device(model) if device is None else torch.device(device)
    schedule = schedule_from_config(config)
    seed = eval_noise_seed(config) if seed is None else seed
    noise = initial_noise(config, n, seed)  # drawn on the CPU: the same on any device
    size = config.eval.sample_batch or max(n, 1)
    seeds = [seed + 1]  # one batch: the generator every cached result was sampled with
    if n > size:
        master = torch.Generator().manual_seed(seed + 1)
        seeds = torch.randint(2**62, (-(-n // size),), generator=master).tolist()
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    parts = []
    for chunk, chunk_seed in zip(noise.split(size), seeds, strict=True):
        generator = torch.Generator(device).manual_seed(chunk_seed)
        kwargs: dict[str, Any] = dict(
            prediction=config.diffusion.prediction, generator=generator, progress_bar=progress_bar
        )
        x_T = chunk.to(device)
        if config.eval.sampler == "ddim":
            steps, eta = config.eval.sampling_steps, config.eval.eta
            x0 = ddim_sample(model, schedule, x_T, steps=steps, eta=eta, **kwargs)
        else:
            x0 = ddpm_sample(model, schedule, x_T, **kwargs)
        parts.append(x0.cpu())
    if module is not None:
        module.train(was_training)
    return torch.cat(parts)


def sample_evaluator(config: Config) -> Evaluator | None:
    """Evaluator for training: for image data (digits or an image folder) the held-out loss
    (see ``heldout.py``) and, unless eval.sample_metrics is off, sample and compare with the
    held-out split (see ``evaluation.py`` for the metrics' spaces); for a toy whose
    optimal denoiser is exact (8-Gaussians) the per-timestep excess risk against it (see
    ``known_answer.py``); None for the other toys."""
    if has_known_answer(config):
        return excess_risk_evaluator(config)
    if config.data.name not in ("digits", "folder"):
        return None
    check_ready(config)  # the split, the feature network: fail now, not hours into training

    def evaluate(model: nn.Module) -> dict[str, float]:
        metrics = heldout_metrics(model, config)
        if config.eval.sample_metrics:
            metrics |= sample_metrics(generate(model, config, config.eval.num_samples), config)
        return metrics

    return evaluate


def train_run(
    config: Config, name: str, *, evaluate: bool = True, train: bool | None = None
) -> RunResult:
    """Train `config` once (resuming an interrupted run) and cache the result under `name`.

    A run missing from the cache is trained here when `train` is True; None follows
    plan.policy (under the paper profile: raise plan.RunsNeeded with the command instead).
    """
    extra = {"evaluate": evaluate}
    if train is False or (train is None and policy(config) == "plan"):
        refuse_missing(missing([config], name, evaluate))
    key = cache_key(config, name, code=False)  # a code edit keeps the run resumable
    run_dir = artifacts_dir(config.profile) / "runs" / f"{name}-{key}"
    ranks = current_ranks()  # under torchrun: every rank trains, rank 0 writes
    if ranks.main:
        check_writable(run_dir)

    def compute() -> RunResult:
        trainer = Trainer(
            config,
            run_dir=run_dir,
            evaluate=sample_evaluator(config) if evaluate else None,
            timesteps=timesteps_for(config),
        )
        history = trainer.fit()
        states = [
            {k: v.cpu() for k, v in m.state_dict().items()} for m in (trainer.ema, trainer.model)
        ]
        return RunResult(config, history, *states, {**environment(), "code": code_version()})

    result = load_or_compute(config, compute, name=name, extra=extra, store=ranks.main)
    if ranks.world > 1:
        dist.barrier()  # the result is written before any rank reads or removes anything
    if ranks.main and cache_path(config, name, extra).exists():  # supersedes the checkpoint
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def missing(configs: list[Config], name: str, evaluate: bool) -> list[str]:
    """The commands that train the runs of `configs` not yet in the cache (each once)."""
    extra = {"evaluate": evaluate}
    absent = [c for c in configs if not cache_path(c, name, extra).exists()]
    return list(dict.fromkeys(command(c, name, evaluate=evaluate) for c in absent))


def train_many(
    configs: list[Config], name: str, *, evaluate: bool = True, jobs: int | None = None
) -> list[RunResult]:
    """train_run for every config, `jobs` at a time in fresh processes of one thread each.

    Results come back in the order of `configs`; cached runs load without starting a worker.
    """
    jobs = default_jobs() if jobs is None else jobs
    if configs and policy(configs[0]) == "plan":  # all missing runs at once, as commands
        refuse_missing(missing(configs, name, evaluate))
    if jobs <= 1 or len(configs) <= 1:
        return [train_run(c, name, evaluate=evaluate) for c in configs]
    with worker_pool(jobs) as pool:
        futures = [pool.submit(train_run, c, name, evaluate=evaluate) for c in configs]
        for future in progress(as_completed(futures), total=len(futures), desc=f"{name} runs"):
            future.result()  # surface the first error at once
        return [f.result() for f in futures]
