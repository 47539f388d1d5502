"""The one training loop every notebook uses: AdamW, EMA, clipping, checkpoints, exact resume."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtl_diffusion.builders import (
    dataset_from_config,
    model_from_config,
    schedule_from_config,
    timesteps_from_config,
)
from mtl_diffusion.cache import atomic_save
from mtl_diffusion.config import Config
from mtl_diffusion.diffusion import per_sample_loss
from mtl_diffusion.ema import make_ema, update_ema
from mtl_diffusion.progress import progress
from mtl_diffusion.repro import seed_everything

Evaluator = Callable[[nn.Module], dict[str, float]]
CHECKPOINT = "checkpoint.pt"


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


@dataclass
class History:
    """Per-step training loss and periodic evaluation results."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)  # each has a "step" key
    seconds: float = 0.0  # training time, evaluation excluded

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
        self.config = config
        seed_everything(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.schedule = schedule_from_config(config)
        self.data = dataset_from_config(config) if data is None else data
        self.model = model_from_config(config) if model is None else model
        self.ema = make_ema(self.model)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay
        )
        self.timesteps = timesteps_from_config(config) if timesteps is None else timesteps
        self.evaluate = evaluate
        self.run_dir = run_dir
        self.step = 0
        self.history = History()
        if run_dir is not None and (run_dir / CHECKPOINT).exists():
            self.load_checkpoint(run_dir / CHECKPOINT)

    # --- one optimisation step -------------------------------------------------------------
    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x0, t, noise) for one minibatch, all drawn from the trainer's generator."""
        batch_size = self.config.train.batch_size
        index = torch.randint(len(self.data), (batch_size,), generator=self.generator)
        x0 = self.data[index]
        t = self.timesteps.sample(batch_size, self.generator)
        noise = torch.randn(x0.shape, generator=self.generator, dtype=x0.dtype)
        return x0, t, noise

    def train_step(self) -> float:
        """One AdamW step on the mean per-sample loss; returns the loss."""
        self.model.train()
        x0, t, noise = self.sample_batch()
        losses = per_sample_loss(
            self.model, self.schedule, x0, t, noise, prediction=self.config.diffusion.prediction
        )
        loss = losses.mean()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {self.step + 1}; training stopped. "
                f"Last good checkpoint: {self.checkpoint_note()}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.train.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.optimizer.step()
        update_ema(self.ema, self.model, self.config.train.ema_decay)
        return loss.item()

    # --- the loop ----------------------------------------------------------------------------
    def fit(self, steps: int | None = None) -> History:
        """Train until `steps` (default: config.train.steps), evaluating and checkpointing."""
        total = self.config.train.steps if steps is None else steps
        train = self.config.train
        bar = progress(range(self.step, total), total=total, initial=self.step, desc="train")
        for _ in bar:
            start = time.perf_counter()
            loss = self.train_step()
            self.step += 1
            self.history.seconds += time.perf_counter() - start
            self.history.steps.append(self.step)
            self.history.losses.append(loss)
            if hasattr(self.timesteps, "observe"):
                self.timesteps.observe(self.step, loss)
            if self.step % max(train.log_every, 1) == 0:
                bar.set_postfix(loss=f"{loss:.4f}")  # type: ignore[attr-defined]
            if self.evaluate is not None and _due(self.step, train.eval_every, total):
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
            "history": self.history,
            "config": self.config.to_dict(),
        }
        if hasattr(self.timesteps, "state_dict"):
            state["timesteps"] = self.timesteps.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self.config.to_dict():
            raise ValueError("checkpoint was written under a different config; use another run_dir")
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = state["history"]
        if "timesteps" in state:
            self.timesteps.load_state_dict(state["timesteps"])

    def save_checkpoint(self, path: Path) -> None:
        atomic_save(self.state_dict(), path)

    def load_checkpoint(self, path: Path) -> None:
        self.load_state_dict(torch.load(path, weights_only=False))

    def checkpoint_note(self) -> str:
        if self.run_dir is None or not (self.run_dir / CHECKPOINT).exists():
            return "none (no run_dir or no checkpoint written yet)"
        step = torch.load(self.run_dir / CHECKPOINT, weights_only=False)["step"]
        return f"{self.run_dir / CHECKPOINT} (step {step})"


def _due(step: int, every: int, total: int) -> bool:
    """True at multiples of `every` (0 = never) and always at the final step."""
    return step == total or (every > 0 and step % every == 0)
