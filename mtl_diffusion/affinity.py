"""Task affinity between timestep bins: gradient cosine (ANT's TAS) and a one-step lookahead.

Timesteps 0..T-1 are split into G bins of width T / G (G = T gives one task per timestep). Bin b's
task loss is the unweighted MSE of the prediction target on a FIXED evaluation set
(:func:`make_eval_set`): the same clean images x0 and noise for every bin (common random numbers,
as the published script uses one image set for every timestep) and per-bin timesteps, all drawn
from one seeded generator, so every checkpoint is measured on the same samples.

- :func:`gradient_affinity`: ``cos(g_i, g_j)`` of the bins' loss gradients over all parameters.
  The G x G Gram matrix is accumulated in blocks, holding at most ``max_vectors`` gradient vectors
  at once and recomputing the rest, so G = 1000 works for models whose G gradients do not fit.
- :func:`lookahead_affinity`: ``1 - L_j(theta - lr g_i) / L_j(theta)`` (Fifty et al., 2021,
  "task affinity grouping"): how much one plain SGD step on bin i lowers bin j's loss. Row i is
  the bin stepped on; the matrix is not symmetric and its diagonal is not 1.
- :func:`task_affinity`: trains one vanilla run, estimates the gradient affinity at several of its
  checkpoints (raw weights, as the published script loads ``checkpoint["model"]``) and returns the
  average; cached. :func:`estimate_affinity` gives the per-checkpoint matrices of either estimator.

Per-bin gradients come from ``torch.func.vmap(grad(...))`` over a block of bins, in eval mode (no
dropout). On CPU this matched a per-bin autograd loop at 64 images per bin and was up to twice as
fast with few images per bin (G = T). The loss is unweighted: the config's loss weighting, a
near-constant factor within a bin, would barely move a cosine.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from mtl_diffusion.builders import (
    dataset_from_config,
    device_from_config,
    model_from_config,
    schedule_from_config,
)
from mtl_diffusion.cache import cache_path, load_or_compute
from mtl_diffusion.config import (
    Config,
    CurriculumConfig,
    EvalConfig,
    MTLConfig,
    TimestepConfig,
    TrainConfig,
    is_smoke,
)
from mtl_diffusion.diffusion import Schedule, check_prediction
from mtl_diffusion.mtl.distributed import current_ranks
from mtl_diffusion.plan import command, policy, refuse_missing
from mtl_diffusion.train import Trainer
from mtl_diffusion.workers import default_jobs, worker_pool

ESTIMATORS = ("gradient", "lookahead")
DEFAULT_NUM_BINS = 20  # default G (bins of T / 20); smoke profiles: SMOKE_NUM_BINS
SMOKE_NUM_BINS = 10
# default images per bin per estimator (lookahead costs G x more); smoke profiles: SMOKE_SAMPLES
SAMPLES_PER_BIN = {"gradient": 64, "lookahead": 32}
SMOKE_SAMPLES = 8
VMAP_SAMPLES = 256  # default gradient block: about this many samples per vmap call (fastest)
FORWARD_SAMPLES = 1024  # default block of bin_losses (forward only)
GRADIENT_MEMORY_BYTES = 2**31  # task_affinity keeps at most this many bytes of gradient vectors
LOOKAHEAD_LR = 2e-3  # plain SGD; on the digits only 1e-3..4e-3 lower the losses
CPU_STEPS = 1000  # training steps of the runs notebooks 01 and 03 measure, under cpu


def affinity_run_steps(profile: str, steps: int = 0) -> dict[str, int]:
    """The train.steps override of the vanilla runs notebooks 01 and 03 measure (the same, so
    03 loads 01's cache): `steps` if given, CPU_STEPS under cpu, else none (the profile's)."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0 (0: the default), got {steps}")
    if steps:
        return {"train.steps": steps}
    return {"train.steps": CPU_STEPS} if profile == "cpu" else {}


def bin_edges(num_timesteps: int, num_bins: int) -> np.ndarray:
    """The G + 1 edges ``0, w, 2w, ..., T`` of G bins of width ``w = T / G`` (G must divide T)."""
    for name, value in (("num_timesteps", num_timesteps), ("num_bins", num_bins)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_bins > num_timesteps or num_timesteps % num_bins:
        raise ValueError(
            f"num_bins must divide num_timesteps={num_timesteps} (bins of equal width), "
            f"got {num_bins}"
        )
    return np.arange(num_bins + 1, dtype=np.int64) * (num_timesteps // num_bins)


@dataclass(frozen=True)
class EvalSet:
    """x0 and noise (n, *shape) shared by every bin; timesteps t (G, n), row b inside bin b."""

    x0: Tensor
    noise: Tensor
    t: Tensor

    @property
    def num_bins(self) -> int:
        return self.t.shape[0]


def make_eval_set(
    data: Tensor, num_timesteps: int, num_bins: int, samples_per_bin: int, seed: int = 0
) -> EvalSet:
    """Draw ``samples_per_bin`` distinct images of ``data``, their noise, and per-bin timesteps
    (uniform inside each bin), all from one generator seeded with ``seed``."""
    edges = torch.from_numpy(bin_edges(num_timesteps, num_bins))
    if not 1 <= samples_per_bin <= len(data):
        raise ValueError(
            f"samples_per_bin must be an integer in 1..{len(data)} (the data size), "
            f"got {samples_per_bin}"
        )
    generator = torch.Generator().manual_seed(seed)
    x0 = data[torch.randperm(len(data), generator=generator)[:samples_per_bin]]
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    width = num_timesteps // num_bins
    offsets = torch.randint(width, (num_bins, samples_per_bin), generator=generator)
    return EvalSet(x0, noise, edges[:-1, None] + offsets)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _bin_inputs(
    schedule: Schedule, eval_set: EvalSet, bins: Sequence[int], prediction: str
) -> tuple[Tensor, Tensor, Tensor]:
    """x_t, t and the regression target of the given bins, each shaped (len(bins), n, ...)."""
    t = eval_set.t[torch.as_tensor(list(bins), dtype=torch.long)]
    B, n = t.shape
    shape = eval_set.x0.shape[1:]
    x0 = eval_set.x0.unsqueeze(0).expand(B, *eval_set.x0.shape).reshape(B * n, *shape)
    noise = eval_set.noise.unsqueeze(0).expand(B, *eval_set.noise.shape).reshape(B * n, *shape)
    flat_t = t.reshape(-1)
    x_t = schedule.q_sample(x0, flat_t, noise).view(B, n, *shape)
    target = schedule.target(x0, noise, flat_t, prediction).view(B, n, *shape)
    return x_t, t, target


def _parameters(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach() for name, p in model.named_parameters()}


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bin_gradients(
    model: nn.Module,
    schedule: Schedule,
    eval_set: EvalSet,
    bins: Sequence[int],
    prediction: str = "eps",
) -> Tensor:
    """Flattened gradients (len(bins), P) of each bin's mean loss over all P parameters, in the
    order of ``model.parameters()``; one vmap(grad) call over the bins."""
    check_prediction(prediction)
    params, buffers = _parameters(model), dict(model.named_buffers())
    x_t, t, target = _bin_inputs(schedule, eval_set, bins, prediction)

    def loss(p: dict[str, Tensor], x: Tensor, steps: Tensor, y: Tensor) -> Tensor:
        return (functional_call(model, (p, buffers), (x, steps)) - y).pow(2).mean()

    with _eval_mode(model):
        grads = vmap(grad(loss), in_dims=(None, 0, 0, 0))(params, x_t, t, target)
    return torch.cat([g.reshape(len(t), -1) for g in grads.values()], dim=1)


@torch.no_grad()
def bin_losses(
    model: nn.Module,
    schedule: Schedule,
    eval_set: EvalSet,
    prediction: str = "eps",
    params: dict[str, Tensor] | None = None,
    block_size: int | None = None,
) -> Tensor:
    """Mean loss of every bin (G,), float64, optionally under replacement ``params``; forward
    passes over ``block_size`` bins at a time (default: about FORWARD_SAMPLES samples)."""
    check_prediction(prediction)
    block_size = _block_size(block_size, eval_set, FORWARD_SAMPLES)
    params = _parameters(model) if params is None else params
    buffers = dict(model.named_buffers())
    losses = []
    with _eval_mode(model):
        for block in _blocks(range(eval_set.num_bins), block_size):
            x_t, t, target = _bin_inputs(schedule, eval_set, block, prediction)
            out = functional_call(model, (params, buffers), (x_t.flatten(0, 1), t.reshape(-1)))
            error = (out.view_as(target) - target).double().pow(2)
            losses.append(error.reshape(len(block), -1).mean(dim=1))
    return torch.cat(losses)


def _blocks(bins: range, size: int) -> Iterator[range]:
    for start in range(bins.start, bins.stop, size):
        yield range(start, min(start + size, bins.stop))


def _block_size(block_size: int | None, eval_set: EvalSet, samples: int = VMAP_SAMPLES) -> int:
    """``block_size``, or by default as many bins as make about ``samples`` samples."""
    if block_size is None:
        return max(1, samples // eval_set.t.shape[1])
    return _check_positive(block_size, "block_size")


def _check_positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def gradient_gram(
    model: nn.Module,
    schedule: Schedule,
    eval_set: EvalSet,
    block_size: int | None = None,
    max_vectors: int | None = None,
    prediction: str = "eps",
) -> Tensor:
    """The (G, G) float64 Gram matrix ``g_i . g_j`` of the bins' loss gradients.

    Gradients are computed ``block_size`` bins per vmap call (default: about VMAP_SAMPLES
    samples per call; larger calls were slower on CPU). With ``max_vectors`` None (or >= G)
    all G vectors are held and each is computed once. Otherwise a chunk of
    ``max_vectors - block_size`` bins is held while the later bins stream past one block at a
    time (recomputed once per held chunk), so at most ``max_vectors`` vectors are in memory.
    """
    block_size = _block_size(block_size, eval_set)
    G = eval_set.num_bins
    held_size = G
    if max_vectors is not None and _check_positive(max_vectors, "max_vectors") < G:
        if max_vectors <= block_size:
            raise ValueError(
                f"max_vectors must exceed block_size={block_size} (or be None), got {max_vectors}"
            )
        held_size = max_vectors - block_size
    P, reference = num_parameters(model), next(model.parameters())
    gram = torch.zeros(G, G, dtype=torch.float64, device=reference.device)
    for held_bins in _blocks(range(G), held_size):
        held = torch.empty(len(held_bins), P, dtype=reference.dtype, device=reference.device)
        for block in _blocks(held_bins, block_size):
            rows = slice(block.start - held_bins.start, block.stop - held_bins.start)
            held[rows] = bin_gradients(model, schedule, eval_set, block, prediction)
        here = slice(held_bins.start, held_bins.stop)
        gram[here, here] = (held @ held.T).double()
        for block in _blocks(range(held_bins.stop, G), block_size):
            other = bin_gradients(model, schedule, eval_set, block, prediction)
            cross = (held @ other.T).double()
            gram[here, block.start : block.stop] = cross
            gram[block.start : block.stop, here] = cross.T
        del held
    return gram


def gram_to_cosine(gram: Tensor | np.ndarray) -> np.ndarray:
    """Cosine matrix of a Gram matrix: unit diagonal, entries clipped to [-1, 1]."""
    gram = torch.as_tensor(gram, dtype=torch.float64).cpu().numpy()
    norms = np.sqrt(np.diag(gram))
    if not (norms > 0).all():
        raise ValueError(
            f"gram has a zero diagonal entry (bin {int(np.argmin(norms))} has a zero gradient); "
            "its cosine is undefined"
        )
    cosine = np.clip(gram / np.outer(norms, norms), -1.0, 1.0)
    np.fill_diagonal(cosine, 1.0)
    return 0.5 * (cosine + cosine.T)


def mean_by_distance(matrix: np.ndarray) -> np.ndarray:
    """Mean of ``matrix[i, j]`` over all pairs with ``|i - j| = d``, for d = 1..G-1: (G - 1,)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ValueError(f"matrix must be square (G, G) with G >= 2, got shape {matrix.shape}")
    G = matrix.shape[0]
    return np.array(
        [
            (np.diagonal(matrix, d).sum() + np.diagonal(matrix, -d).sum()) / (2 * (G - d))
            for d in range(1, G)
        ]
    )


def gradient_affinity(
    model: nn.Module,
    schedule: Schedule,
    eval_set: EvalSet,
    block_size: int | None = None,
    max_vectors: int | None = None,
    prediction: str = "eps",
) -> np.ndarray:
    """(G, G) cosine of the bins' loss gradients at the model's current weights (see
    :func:`gradient_gram` for ``block_size`` and ``max_vectors``)."""
    return gram_to_cosine(
        gradient_gram(model, schedule, eval_set, block_size, max_vectors, prediction)
    )


def lookahead_affinity(
    model: nn.Module,
    schedule: Schedule,
    eval_set: EvalSet,
    lr: float = LOOKAHEAD_LR,
    block_size: int | None = None,
    prediction: str = "eps",
) -> np.ndarray:
    """(G, G) ``Z[i, j] = 1 - L_j(theta - lr * grad L_i) / L_j(theta)``: the relative drop of bin
    j's loss after one plain SGD step of size ``lr`` on bin i alone (Fifty et al., 2021)."""
    if not lr > 0:
        raise ValueError(f"lr must be a positive float, got {lr!r}")
    block_size = _block_size(block_size, eval_set)
    params = _parameters(model)
    before = bin_losses(model, schedule, eval_set, prediction, params)
    G = eval_set.num_bins
    affinity = np.empty((G, G))
    for block in _blocks(range(G), block_size):
        grads = bin_gradients(model, schedule, eval_set, block, prediction)
        for row, i in enumerate(block):
            pieces = grads[row].split([p.numel() for p in params.values()])
            stepped = {
                name: p - lr * g.view_as(p)
                for (name, p), g in zip(params.items(), pieces, strict=True)
            }
            after = bin_losses(model, schedule, eval_set, prediction, stepped)
            affinity[i] = (1.0 - after / before).cpu().numpy()
    return affinity


# --- one training run, several checkpoints, cached --------------------------------------------


def vanilla_config(config: Config) -> Config:
    """``config`` with ordinary all-task training: the MTL, timestep-sampler, curriculum and
    evaluation sections and the logging/checkpoint/evaluation intervals reset to their defaults
    (model, data, diffusion, the rest of training and the seed are kept), so an ANT config and a
    notebook config that differ only there share one cached estimate."""
    defaults = TrainConfig()
    train = dataclasses.replace(
        config.train,
        checkpoint_every=defaults.checkpoint_every,
        eval_every=defaults.eval_every,
        log_every=defaults.log_every,
    )
    return dataclasses.replace(
        config,
        train=train,
        mtl=MTLConfig(),
        timesteps=TimestepConfig(),
        curriculum=CurriculumConfig(),
        eval=EvalConfig(),
    )


def default_snapshots(config: Config) -> tuple[int, ...]:
    """Four checkpoints evenly spaced over ``config.train.steps``: s/4, s/2, 3s/4, s."""
    steps = config.train.steps
    return tuple(sorted({max(1, round(steps * q / 4)) for q in (1, 2, 3, 4)}))


@dataclass
class Snapshots:
    """Raw model weights of one vanilla run at each step in ``steps``, and its training loss."""

    steps: tuple[int, ...]
    states: list[dict[str, Tensor]]
    losses: list[float]
    train_seconds: float


def training_snapshots(
    config: Config,
    snapshots: Sequence[int] | None = None,
    name: str = "affinity_snapshots",
    *,
    train: bool | None = None,
) -> Snapshots:
    """Train ``vanilla_config(config)`` once through :class:`Trainer`, copying the raw (non-EMA)
    weights at every step in ``snapshots`` (default :func:`default_snapshots`); cached.

    When not cached: trained here if `train` is True; None follows plan.policy (under the paper
    profile: raise plan.RunsNeeded with the training command instead)."""
    cfg = vanilla_config(config)
    steps = _check_snapshots(default_snapshots(cfg) if snapshots is None else snapshots)
    if train is False or (train is None and policy(cfg) == "plan"):
        refuse_missing(missing_snapshots([cfg], steps, name))

    def compute() -> Snapshots:
        trainer = Trainer(cfg)
        states = []
        for step in steps:
            trainer.fit(steps=step)
            states.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
        history = trainer.history
        return Snapshots(steps, states, list(history.losses), history.seconds)

    extra = {"snapshots": list(steps)}
    return load_or_compute(cfg, compute, name=name, extra=extra, store=current_ranks().main)


def missing_snapshots(
    configs: Sequence[Config], snapshots: Sequence[int] | None, name: str = "affinity_snapshots"
) -> list[str]:
    """The commands that train the :func:`training_snapshots` runs not yet in the cache."""
    commands = []
    for config in configs:
        cfg = vanilla_config(config)
        steps = _check_snapshots(default_snapshots(cfg) if snapshots is None else snapshots)
        if not cache_path(cfg, name, {"snapshots": list(steps)}).exists():
            commands.append(command(cfg, name, evaluate=False, snapshots=steps))
    return list(dict.fromkeys(commands))


def _check_snapshots(snapshots: Sequence[int]) -> tuple[int, ...]:
    steps = tuple(snapshots)
    valid = all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in steps)
    if (
        not steps
        or not valid
        or steps[0] < 0
        or any(b <= a for a, b in zip(steps[:-1], steps[1:], strict=True))
    ):
        raise ValueError(
            f"snapshots must be a non-empty, strictly increasing sequence of training steps >= 0, "
            f"got {snapshots!r}"
        )
    return tuple(int(s) for s in steps)


@dataclass
class AffinityEstimate:
    """Affinity matrices (S, G, G) at S checkpoints, the bins' eval losses (S, G) there, and the
    time the estimation took (training excluded)."""

    estimator: str
    snapshots: tuple[int, ...]
    matrices: np.ndarray
    losses: np.ndarray
    seconds: float

    @property
    def mean(self) -> np.ndarray:
        """The matrix averaged over checkpoints (what ANT calls TAS)."""
        return self.matrices.mean(axis=0)

    @property
    def num_bins(self) -> int:
        return self.matrices.shape[1]


def default_num_bins(config: Config) -> int:
    """G used when none is given: 20 bins (10 under ``smoke``), fewer if 20 does not divide T."""
    G = SMOKE_NUM_BINS if is_smoke(config.profile) else DEFAULT_NUM_BINS
    T = config.diffusion.num_timesteps
    return max(g for g in range(1, min(G, T) + 1) if T % g == 0)


def estimate_affinity(
    config: Config,
    num_bins: int | None = None,
    *,
    estimator: str = "gradient",
    snapshots: Sequence[int] | None = None,
    samples_per_bin: int | None = None,
    lr: float = LOOKAHEAD_LR,
    memory_bytes: int = GRADIENT_MEMORY_BYTES,
    name: str = "task_affinity",
) -> AffinityEstimate:
    """One estimator at every checkpoint of :func:`training_snapshots`; cached under ``name``.

    ``num_bins`` defaults to :func:`default_num_bins`. The eval set is drawn from the training
    data with seed ``config.seed``; ``samples_per_bin`` defaults to 64 for "gradient" and 32 for
    "lookahead" (8 under ``smoke``). The gradient estimator holds at most ``memory_bytes`` of
    gradient vectors; ``lr`` is the lookahead's SGD step (ignored by "gradient").
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    cfg = vanilla_config(config)
    num_bins = default_num_bins(cfg) if num_bins is None else num_bins
    bin_edges(cfg.diffusion.num_timesteps, num_bins)  # validate before training
    steps = _check_snapshots(default_snapshots(cfg) if snapshots is None else snapshots)
    n = SMOKE_SAMPLES if is_smoke(cfg.profile) else SAMPLES_PER_BIN[estimator]
    n = n if samples_per_bin is None else samples_per_bin
    extra = {
        "estimator": estimator,
        "num_bins": num_bins,
        "snapshots": list(steps),
        "samples_per_bin": n,
        **({"lr": lr} if estimator == "lookahead" else {}),
    }

    def compute() -> AffinityEstimate:
        trained = training_snapshots(cfg, steps)
        device = device_from_config(cfg)  # drawn on the CPU, estimated on the run's device
        schedule = schedule_from_config(cfg).to(device)
        drawn = make_eval_set(
            dataset_from_config(cfg), cfg.diffusion.num_timesteps, num_bins, n, seed=cfg.seed
        )
        eval_set = EvalSet(drawn.x0.to(device), drawn.noise.to(device), drawn.t.to(device))
        model = model_from_config(cfg).to(device)
        prediction = cfg.diffusion.prediction
        vectors_fit = max(2, memory_bytes // (4 * num_parameters(model)))
        block = min(_block_size(None, eval_set), max(1, vectors_fit // 2))
        start = time.perf_counter()
        matrices, losses = [], []
        for state in trained.states:
            model.load_state_dict(state)
            if estimator == "gradient":
                max_vectors = max(vectors_fit, block + 1)
                matrix = gradient_affinity(
                    model, schedule, eval_set, block, max_vectors, prediction
                )
            else:
                matrix = lookahead_affinity(model, schedule, eval_set, lr, block, prediction)
            matrices.append(matrix)
            losses.append(bin_losses(model, schedule, eval_set, prediction).cpu().numpy())
        seconds = time.perf_counter() - start
        return AffinityEstimate(estimator, steps, np.stack(matrices), np.stack(losses), seconds)

    return load_or_compute(cfg, compute, name=name, extra=extra)


def precompute_affinity(
    configs: Sequence[Config],
    num_bins: int | None = None,
    *,
    lookahead: dict[str, Any] | None = None,
    jobs: int | None = None,
) -> None:
    """Fill the cache with the gradient estimate (and, given ``lookahead``, the keyword
    arguments of a lookahead estimate) of every config, ``jobs`` configs at a time in one-thread
    worker processes; the :func:`estimate_affinity` / :func:`task_affinity` calls that follow
    with the same arguments load the results."""
    jobs = default_jobs() if jobs is None else jobs
    if configs and policy(configs[0]) == "plan":  # every missing training run at once
        refuse_missing(missing_snapshots(configs, None))
    if jobs <= 1 or len(configs) <= 1:
        for config in configs:
            _estimates(config, num_bins, lookahead)
        return
    with worker_pool(jobs) as pool:
        for future in [pool.submit(_estimates, c, num_bins, lookahead) for c in configs]:
            future.result()


def _estimates(config: Config, num_bins: int | None, lookahead: dict[str, Any] | None) -> None:
    estimate_affinity(config, num_bins)
    if lookahead is not None:
        estimate_affinity(config, num_bins, estimator="lookahead", **lookahead)


def task_affinity(
    config: Config,
    num_bins: int | None = None,
    *,
    snapshots: Sequence[int] | None = None,
    samples_per_bin: int | None = None,
    name: str = "task_affinity",
) -> np.ndarray:
    """ANT's task affinity score between G = ``num_bins`` timestep bins (default
    :func:`default_num_bins`): the gradient cosine averaged over checkpoints of one vanilla run of
    ``config`` (float64 (G, G), symmetric, unit diagonal; bin b covers timesteps
    ``b * T // G .. (b + 1) * T // G - 1``). Cached.

    Feed it to ``clustering.affinity_clusters(tas, k, bin_width=T // num_bins)``.
    """
    return estimate_affinity(
        config,
        num_bins,
        estimator="gradient",
        snapshots=snapshots,
        samples_per_bin=samples_per_bin,
        name=name,
    ).mean
