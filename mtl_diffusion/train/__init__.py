"""The one training loop every notebook uses: AdamW, EMA, clipping, checkpoints, exact resume.

Each step: a batch (x0, t, noise) -> x_t, target and the per-timestep loss weight of t
(diffusion.loss_weight) -> the MTL engine's objective, backward (mtl.method over the sampler's
clusters; vanilla over one cluster when the sampler has none) -> a finite gradient norm or stop
-> clip -> AdamW -> EMA (with warm-up: see ema.ema_decay). A timestep sampler with
``draw(batch_size, generator) -> (t, expert)`` (MEME's soft assignment) also names each
sample's expert: the model is called as ``model(x_t, t, expert=ids)`` and cluster j = expert j.

Under torchrun (an initialised process group) every rank draws the same global batch of
train.batch_size from the shared generator and trains on its contiguous B / W rows
(mtl.distributed.shard); loss-based methods run through DistributedDataParallel, gradient
methods average their per-cluster gradients over ranks, so every rank takes the update of the
global batch and the weights stay identical. Rank 0 alone evaluates, checkpoints and shows
progress; every rank resumes from the same checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mtl_diffusion.builders import (
    dataset_from_config,
    device_from_config,
    engine_from_config,
    model_from_config,
    schedule_from_config,
    timesteps_from_config,
)
from mtl_diffusion.cache import remove_stale_temporaries
from mtl_diffusion.checkpoints import (
    non_finite,
    read_checkpoint,
    resume_allowed,
    write_checkpoint,
)
from mtl_diffusion.config import Config, validate
from mtl_diffusion.data import check_training_data
from mtl_diffusion.diffusion import Schedule
from mtl_diffusion.ema import ema_decay, make_ema, update_ema
from mtl_diffusion.mtl.batch import DenoisingBatch
from mtl_diffusion.mtl.distributed import RankAverage, broadcast_state, current_ranks, shard
from mtl_diffusion.mtl.engine import MTLEngine, NonFiniteLossError, StepStats
from mtl_diffusion.mtl.registry import get_method
from mtl_diffusion.progress import progress
from mtl_diffusion.repro import seed_everything
from mtl_diffusion.weighting import loss_weight

Evaluator = Callable[[nn.Module], dict[str, float]]
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # train.precision
CHECKPOINT = "checkpoint.pt"


@dataclass
class History:
    """Per-step training loss and periodic evaluation results.

    `losses` is the batch mean of the weighted per-sample loss (for every MTL method);
    `cluster_losses[s][i]` is L_i at step s (their sum is the loss) and `method_weights[s][i]`
    the multiplier w_i of grad L_i in that step's update (see mtl_diffusion.mtl.engine).
    """

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)  # each has a "step" key
    seconds: float = 0.0  # training time, evaluation excluded
    cluster_losses: list[list[float]] = field(default_factory=list)
    method_weights: list[list[float]] = field(default_factory=list)

    def eval_series(self, metric: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one evaluation metric."""
        return [int(e["step"]) for e in self.evals], [e[metric] for e in self.evals]


class Trainer:
    """Trains a denoiser on `config`; resumes from `run_dir` when a checkpoint is there."""

    def __init__(
        self,
        config: Config,
        *,
        run_dir: Path | None = None,
        data: torch.Tensor | None = None,
        model: nn.Module | None = None,
        evaluate: Evaluator | None = None,
        timesteps: Any = None,
    ) -> None:
        validate(config)  # also a Config built directly or by dataclasses.replace
        self.config = config
        seed_everything(config.seed)
        # Random draws come from a CPU generator and move to `device`, so a seed gives the same
        # batches on every device.
        self.ranks = current_ranks()
        self.device = device_from_config(config)
        if self.device.type == "cuda" and self.ranks.world > 1:  # torchrun: LOCAL_RANK's GPU
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.generator = torch.Generator().manual_seed(config.seed)
        self.schedule = schedule_from_config(config).to(self.device)
        data = dataset_from_config(config) if data is None else data
        check_training_data(data, config.data.name in ("digits", "folder"), "the training data")
        self.data = data.to(self.device)
        self.model = (model_from_config(config) if model is None else model).to(self.device)
        self.ema = make_ema(self.model)
        self.timesteps = timesteps_from_config(config) if timesteps is None else timesteps
        self.loss_weights = timestep_loss_weights(config, self.schedule)
        k = self._num_clusters()
        self.engine = self._engine(k)
        self.shard = shard(config.train.batch_size, k, self.ranks)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
        )
        self.engine.attach(self.optimizer)
        self.autocast = AUTOCAST[config.train.precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast is torch.float16)
        self.evaluate = evaluate
        self.run_dir = run_dir
        self.step = 0
        self.history = History()
        self.last_stats: StepStats | None = None
        if run_dir is not None:
            remove_stale_temporaries(run_dir, CHECKPOINT)
            if (run_dir / CHECKPOINT).exists():
                state = read_checkpoint(run_dir / CHECKPOINT)  # CPU: RNG states must stay there
                if resume_allowed(state, run_dir / CHECKPOINT):
                    self.load_state_dict(state)

    def _engine(self, k: int) -> MTLEngine:
        """The MTL engine; under torchrun with averaging over ranks (see the module doc)."""
        if self.ranks.world == 1:
            return engine_from_config(self.config, self.model, k)
        broadcast_state(self.model)  # the same start on every rank, whatever each one seeded
        sync = RankAverage()
        if get_method(self.config.mtl.method).kind == "gradient":
            return engine_from_config(self.config, self.model, k, sync)
        ids = [self.device.index] if self.device.type == "cuda" else None
        wrapped = DistributedDataParallel(self.model, device_ids=ids)
        return engine_from_config(self.config, wrapped, k, sync)

    # --- one optimisation step -------------------------------------------------------------
    def sample_batch(self) -> tuple[torch.Tensor, ...]:
        """(x0, t, noise) for one minibatch, all drawn from the trainer's generator (under
        torchrun: the global batch, the same on every rank). A sampler that names each sample's
        expert (``draw(batch_size, generator) -> (t, expert)``, e.g. MEME's soft assignment)
        adds the expert ids: (x0, t, noise, expert)."""
        batch_size = self.config.train.batch_size
        index = torch.randint(len(self.data), (batch_size,), generator=self.generator)
        x0 = self.data[index.to(self.device)]
        expert = None
        if hasattr(self.timesteps, "draw"):
            t, expert = self.timesteps.draw(batch_size, self.generator)
        else:
            t = self.timesteps.sample(batch_size, self.generator)
        noise = torch.randn(x0.shape, generator=self.generator, dtype=x0.dtype)
        drawn = (x0, t.to(self.device), noise.to(self.device))
        return drawn if expert is None else (*drawn, expert.to(self.device))

    def denoising_batch(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        expert: torch.Tensor | None = None,
    ) -> DenoisingBatch:
        """Model input, regression target, loss weight and cluster ids of this rank's share of
        a global batch (all of it in a single process). With ``expert`` ids the model is called
        as ``model(x_t, t, expert=ids)`` and the ids are the cluster ids (cluster j = expert j)."""
        prediction = self.config.diffusion.prediction
        clusters, cond = None, {}
        if expert is not None:
            cond = {"expert": expert[self.shard]}
            clusters = expert[self.shard] if self.engine.k > 1 else None
        elif self.engine.k > 1:
            clusters = self.timesteps.assignments(len(t)).to(t.device)[self.shard]
        x0, t, noise = x0[self.shard], t[self.shard], noise[self.shard]
        return DenoisingBatch(
            x_t=self.schedule.q_sample(x0, t, noise),
            t=t,
            target=self.schedule.target(x0, noise, t, prediction),
            weight=self.loss_weights[t].to(x0.dtype),
            num_clusters=self.engine.k,
            clusters=clusters,
            cond=cond,
        )

    def train_step(self) -> float:
        """One AdamW step of the configured MTL method; returns the batch-mean loss."""
        self.model.train()
        batch = self.denoising_batch(*self.sample_batch())
        self.optimizer.zero_grad(set_to_none=True)
        scaling = self.scaler.is_enabled()
        try:
            with torch.autocast(self.device.type, self.autocast, enabled=self.autocast is not None):
                step = self.engine.objective(
                    batch, loss_scale=self.scaler.get_scale() if scaling else 1.0
                )
        except NonFiniteLossError as err:
            raise NonFiniteLossError(
                f"{err} at step {self.step + 1}; training stopped. "
                f"Last good checkpoint: {self.checkpoint_note()}"
            ) from None
        stats = step.stats
        self.scaler.scale(step.objective).backward()
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm = nn.utils.get_total_norm(grads)
        if not torch.isfinite(norm) and scaling:  # fp16 overflow: the scaler skips this step
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.last_stats = stats
            return stats.loss
        if not torch.isfinite(norm):
            raise NonFiniteLossError(
                f"gradient norm is {norm.item()} (loss {stats.loss:.4g}) at step {self.step + 1}; "
                "training stopped before the update. Last good checkpoint: "
                f"{self.checkpoint_note()}"
            )
        if self.config.train.grad_clip > 0:
            nn.utils.clip_grads_with_norm_(
                self.model.parameters(), self.config.train.grad_clip, norm
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.engine.after_step(batch)
        train = self.config.train
        update_ema(self.ema, self.model, ema_decay(train.ema_decay, self.step, train.ema_warmup))
        self.last_stats = stats
        return stats.loss

    def _num_clusters(self) -> int:
        """k of a clustered sampler (one with `assignments`, the cluster id of every sample);
        1 otherwise, for vanilla only."""
        if not hasattr(self.timesteps, "assignments"):
            if self.config.mtl.method != "vanilla":
                raise ValueError(
                    f"mtl.method={self.config.mtl.method!r} needs timestep clusters: set "
                    "timesteps.sampler='stratified' (or use mtl.method='vanilla')"
                )
            return 1
        self.timesteps.assignments(self.config.train.batch_size)  # every cluster in every batch
        return self.timesteps.num_clusters

    # --- the loop ----------------------------------------------------------------------------
    def fit(self, steps: int | None = None) -> History:
        """Train until `steps` (default: config.train.steps), evaluating and checkpointing."""
        total = self.config.train.steps if steps is None else steps
        train = self.config.train
        bar = progress(
            range(self.step, total),
            total=total,
            initial=self.step,
            desc="train",
            **({} if self.ranks.main else {"disable": True}),
        )
        for _ in bar:
            start = time.perf_counter()
            loss = self.train_step()
            self.step += 1
            self.history.seconds += time.perf_counter() - start
            self.history.steps.append(self.step)
            self.history.losses.append(loss)
            stats = self.last_stats
            assert stats is not None  # set by train_step
            self.history.cluster_losses.append(stats.cluster_losses)
            self.history.method_weights.append(stats.weights)
            if hasattr(self.timesteps, "observe"):
                self.timesteps.observe(self.step, loss)
            if self.step % max(train.log_every, 1) == 0:
                bar.set_postfix(loss=f"{loss:.4f}")  # type: ignore[attr-defined]
            evaluating = self.evaluate is not None and self.ranks.main
            if evaluating and _due(self.step, train.eval_every, total):
                self.history.evals.append({"step": self.step, **self.evaluate(self.ema)})
            if self.run_dir is not None and _due(self.step, train.checkpoint_every, total):
                self.save_checkpoint(self.run_dir / CHECKPOINT)
        return self.history

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "history": self.history,
            "config": self.config.to_dict(),
            "engine": self.engine.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if hasattr(self.timesteps, "state_dict"):
            state["timesteps"] = self.timesteps.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self.config.to_dict():
            raise ValueError(
                f"the checkpoint in {self.run_dir} was written under a different config; use "
                "another run_dir (or delete that checkpoint)"
            )
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None:  # dropout masks on the GPU continue exactly
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history = state["history"]
        self.engine.load_state_dict(state["engine"])
        self.scaler.load_state_dict(state["scaler"])
        if "timesteps" in state:
            self.timesteps.load_state_dict(state["timesteps"])

    def save_checkpoint(self, path: Path) -> None:
        """Write the state, only if finite (the previous checkpoint is kept otherwise); under
        torchrun rank 0 writes and every rank waits for it."""
        state = self.state_dict()
        bad = non_finite(state)
        if bad:
            raise NonFiniteLossError(
                f"non-finite weights at step {self.step} ({', '.join(bad[:3])}); not saved. "
                f"Last good checkpoint: {self.checkpoint_note()}"
            )
        if self.ranks.main:
            write_checkpoint(state, path)
        if self.ranks.world > 1:
            dist.barrier()

    def load_checkpoint(self, path: Path) -> None:
        self.load_state_dict(read_checkpoint(path))  # tensors move to the model's device on load

    def checkpoint_note(self) -> str:
        path = None if self.run_dir is None else self.run_dir / CHECKPOINT
        if path is None or not path.exists():
            return "none (no run_dir or no checkpoint written yet)"
        try:
            return f"{path} (step {read_checkpoint(path)['step']})"
        except RuntimeError as error:
            return f"none readable ({error})"


def timestep_loss_weights(config: Config, schedule: Schedule) -> torch.Tensor:
    """diffusion.loss_weight for every timestep, (T,) float32, computed once per schedule."""
    d = config.diffusion
    options: dict[str, Any] = {}
    if d.loss_weight == "min_snr":
        options = {"gamma": d.min_snr_gamma, "prediction": d.prediction}
    elif d.loss_weight == "p2":
        if d.prediction != "eps":
            raise ValueError(
                "diffusion.loss_weight='p2' multiplies the eps-MSE: it needs "
                f"diffusion.prediction='eps', got {d.prediction!r}"
            )
        options = {"gamma": d.p2_gamma, "k": d.p2_k}
    return loss_weight(d.loss_weight, schedule.snr(), **options).float()


def _due(step: int, every: int, total: int) -> bool:
    """True at multiples of `every` (0 = never) and always at the final step."""
    return step == total or (every > 0 and step % every == 0)
