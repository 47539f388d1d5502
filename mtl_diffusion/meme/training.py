"""Training MEME experts with the project's Trainer (experiment layer: needs a Config).

- :func:`joint_trainer`: all experts in one loop. t is stratified by the experts' intervals
  (every expert in every batch; cluster i = expert i for the MTL method) and each sample goes to
  its interval's expert (hard assignment); with ``probabilities`` (soft assignment) sample b
  trains expert b mod k on a t of :class:`~mtl_diffusion.meme.assignment.SoftAssignment`, the
  Trainer passing the expert ids to the model.
- :func:`expert_trainers`: one Trainer per expert, trained one at a time, expert j on its
  :class:`~mtl_diffusion.meme.assignment.SoftIntervalTimesteps` (soft assignment, or hard with
  ``probabilities="hard"``). Each runs ``config.train.steps``: give it total / k for the same
  total steps as one joint or shared run. Vanilla only (a single-expert sampler has no clusters).

As Config keys (what ``runs.train_run`` trains): ``model.arch="meme"`` builds the experts
(``builders.mixed_from_config``), ``timesteps.sampler="stratified"`` is the hard joint loop and
``"soft"`` the soft one (``timesteps.soft_p``). In your own loop:
:func:`~mtl_diffusion.meme.batch.soft_denoising_batch` and the MTL engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtl_diffusion.clustering import Interval
from mtl_diffusion.config import Config
from mtl_diffusion.meme.assignment import SoftAssignment
from mtl_diffusion.meme.multi_expert import MultiExpertDenoiser, mixed_experts
from mtl_diffusion.timesteps import StratifiedTimesteps
from mtl_diffusion.train import Trainer


def experts_from_config(
    config: Config,
    intervals: Sequence[Interval],
    ratios: Sequence[float] | None = None,
    *,
    dispatch: str = "sparse",
    **expert_kwargs: Any,
) -> MultiExpertDenoiser:
    """One MixedUNet per interval, sized by config.model (base_channels, channel_mults,
    num_res_blocks, num_heads, dropout) and config.data.channels; ``expert_kwargs`` override
    (pool, kernel_size, depthwise, ...)."""
    T = config.diffusion.num_timesteps
    if intervals[-1][1] != T - 1:
        raise ValueError(f"intervals must cover diffusion.num_timesteps = {T}")
    m = config.model
    sizes: dict[str, Any] = {
        "in_channels": config.data.channels,
        "base_channels": m.base_channels,
        "channel_mults": m.channel_mults,
        "num_blocks": m.num_res_blocks,
        "num_heads": m.num_heads,
        "dropout": m.dropout,
    }
    return mixed_experts(intervals, ratios, dispatch=dispatch, **{**sizes, **expert_kwargs})


def _check_span(config: Config, model: MultiExpertDenoiser) -> None:
    if model.num_timesteps != config.diffusion.num_timesteps:
        raise ValueError(
            f"the experts' intervals cover {model.num_timesteps} timesteps, "
            f"diffusion.num_timesteps is {config.diffusion.num_timesteps}"
        )


def joint_trainer(
    config: Config,
    model: MultiExpertDenoiser,
    probabilities: str | Sequence[float] = "hard",
    outside: str = "complement",
    **trainer_kwargs: Any,
) -> Trainer:
    """A Trainer of all experts in one loop: hard assignment (``"hard"``, stratified t, routed
    by t) or soft (``"secondary"`` or k probabilities; see the module doc)."""
    _check_span(config, model)
    sampler: StratifiedTimesteps | SoftAssignment = StratifiedTimesteps(model.intervals)
    if probabilities != "hard":
        sampler = SoftAssignment(model.intervals, probabilities, outside)
    return Trainer(config, model=model, timesteps=sampler, **trainer_kwargs)


def expert_trainers(
    config: Config,
    model: MultiExpertDenoiser,
    probabilities: str | Sequence[float] = "secondary",
    outside: str = "complement",
    *,
    run_dir: Path | None = None,
    **trainer_kwargs: Any,
) -> list[Trainer]:
    """One Trainer per expert (``run_dir / f"expert{j}"`` each when run_dir is given); training
    one moves and updates ``model.experts[j]`` itself, so ``model`` holds the trained experts."""
    _check_span(config, model)
    if config.mtl.method != "vanilla":
        raise ValueError(
            f"one expert at a time trains with mtl.method='vanilla', got {config.mtl.method!r}"
        )
    assignment = SoftAssignment(model.intervals, probabilities, outside)
    return [
        Trainer(
            config,
            model=expert,
            timesteps=sampler,
            run_dir=None if run_dir is None else run_dir / f"expert{j}",
            **trainer_kwargs,
        )
        for j, (expert, sampler) in enumerate(zip(model.experts, assignment.experts, strict=True))
    ]


def ema_experts(trainers: Sequence[Trainer], model: MultiExpertDenoiser) -> MultiExpertDenoiser:
    """The experts' EMA copies of :func:`expert_trainers` as one denoiser (model's intervals
    and dispatch), for sampling and evaluation."""
    if len(trainers) != model.num_experts:
        raise ValueError(f"need one trainer per expert ({model.num_experts}), got {len(trainers)}")
    return MultiExpertDenoiser([t.ema for t in trainers], model.intervals, model.dispatch)
