"""Denoising-task-difficulty curriculum (Kim et al., arXiv 2403.10348): easy tasks first.

Timesteps 0..T-1 are split into N contiguous clusters C_1 (lowest t: least noise, hardest) ..
C_N (highest t: most noise, easiest). Stage 1 trains on C_N only; every later stage ADDS the next
harder cluster, and t is drawn uniformly over the timesteps of the union (which is always one
contiguous range, because clusters are added in t order). The last stage holds every cluster,
so it IS ordinary uniform sampling over 0..T-1, and it never ends. ``order="hard_first"`` adds
the clusters the other way round (C_1 first): the anti-curriculum control.

Pacing decides when a stage ends:

- ``"patience"``: after every step the trainer reports the training loss; the sampler keeps a
  bias-corrected exponential moving average of it (decay ``smoothing``; 0 uses the raw loss) and
  the best smoothed value seen in the current stage. A step that does not lower the best counts
  towards ``patience``; ``patience`` such steps in a row end the stage. Adding a harder cluster
  raises the loss level (low-noise epsilon-prediction losses are larger), so carrying the old
  best over would end every later stage after exactly ``patience`` steps. Hence at every stage
  change the moving average, the best and the counter all restart from the new stage's losses.
- ``"fixed"``: every stage lasts ``stage_steps`` steps.

The pacing reads nothing but the sequence of reported losses, so :func:`transitions_from_losses`
recovers a finished run's stage changes from its loss history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from mtl_diffusion.clustering import Interval, snr_clusters, timestep_clusters, validate_intervals
from mtl_diffusion.config import Config
from mtl_diffusion.diffusion import make_schedule

ORDERS = ("easy_first", "hard_first")
PACINGS = ("patience", "fixed")
CLUSTERINGS = ("timestep", "snr")


class CurriculumTimesteps:
    """Timestep sampler whose range grows one difficulty cluster per stage."""

    def __init__(
        self,
        intervals: Sequence[Interval],
        *,
        order: str = "easy_first",
        pacing: str = "patience",
        patience: int = 200,
        stage_steps: int = 100,
        smoothing: float = 0.99,
    ) -> None:
        self.intervals = validate_intervals(intervals)
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if pacing not in PACINGS:
            raise ValueError(f"pacing must be one of {PACINGS}, got {pacing!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if isinstance(stage_steps, bool) or not isinstance(stage_steps, int) or stage_steps < 1:
            raise ValueError(f"stage_steps must be an integer >= 1, got {stage_steps!r}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must lie in [0, 1), got {smoothing!r}")
        self.order, self.pacing = order, pacing
        self.patience, self.stage_steps, self.smoothing = patience, stage_steps, float(smoothing)
        self.num_timesteps = self.intervals[-1][1] + 1
        n = len(self.intervals)
        # cluster indices (0 = lowest t) in the order the stages add them
        self.cluster_order = list(range(n - 1, -1, -1)) if order == "easy_first" else list(range(n))
        self.stage = 0
        self.transitions: list[tuple[int, int]] = []  # (step after which, stage entered)
        self._restart_stage()

    @classmethod
    def from_config(cls, config: Config) -> CurriculumTimesteps:
        """The curriculum of ``config.curriculum`` over all ``config.diffusion.num_timesteps``."""
        c, T = config.curriculum, config.diffusion.num_timesteps
        if config.timesteps.t_start != 0 or config.timesteps.t_end not in (-1, T - 1):
            raise ValueError(
                "timesteps.t_start/t_end must cover every timestep (0 and -1) for the curriculum "
                f"sampler, got t_start={config.timesteps.t_start}, t_end={config.timesteps.t_end}"
            )
        if c.clustering not in CLUSTERINGS:
            raise ValueError(
                f"curriculum.clustering must be one of {CLUSTERINGS}, got {c.clustering!r}"
            )
        if c.clustering == "timestep":
            intervals = timestep_clusters(T, c.num_clusters)
        else:
            intervals = snr_clusters(make_schedule(config.diffusion.schedule, T), c.num_clusters)
        return cls(
            intervals,
            order=c.order,
            pacing=c.pacing,
            patience=c.patience,
            stage_steps=c.stage_steps,
            smoothing=c.smoothing,
        )

    # --- what is sampled ---------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.intervals)

    @property
    def finished(self) -> bool:
        """True once every cluster is included: plain uniform sampling from then on."""
        return self.stage == self.num_stages - 1

    def included(self) -> list[int]:
        """Indices (0 = lowest t) of the clusters the current stage samples from."""
        return sorted(self.cluster_order[: self.stage + 1])

    def timestep_range(self) -> tuple[int, int]:
        """The union of the included clusters as one inclusive ``(low, high)`` range."""
        chosen = self.included()
        return self.intervals[chosen[0]][0], self.intervals[chosen[-1]][1]

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """t uniform over the timesteps of the included clusters (all of 0..T-1 when finished)."""
        low, high = self.timestep_range()
        return torch.randint(low, high + 1, (batch_size,), generator=generator)

    # --- pacing ------------------------------------------------------------------------------
    @property
    def smoothed_loss(self) -> float:
        """Bias-corrected moving average of this stage's losses (nan before the first one)."""
        if self._count == 0:
            return math.nan
        return self._ema / (1.0 - self.smoothing**self._count)

    def observe(self, step: int, loss: float) -> None:
        """Report the training loss of `step`; may move to the next stage for step + 1."""
        if not math.isfinite(loss):
            raise ValueError(f"loss must be finite, got {loss!r} at step {step}")
        if self.finished:
            return
        self._steps_in_stage += 1
        if self.pacing == "fixed":
            if self._steps_in_stage >= self.stage_steps:
                self._advance(step)
            return
        self._ema = self.smoothing * self._ema + (1.0 - self.smoothing) * float(loss)
        self._count += 1
        if self.smoothed_loss < self._best:
            self._best, self._since_best = self.smoothed_loss, 0
        else:
            self._since_best += 1
        if self._since_best >= self.patience:
            self._advance(step)

    def _advance(self, step: int) -> None:
        self.stage += 1
        self.transitions.append((int(step), self.stage))
        self._restart_stage()

    def _restart_stage(self) -> None:
        self._steps_in_stage = 0
        self._ema, self._count = 0.0, 0
        self._best, self._since_best = math.inf, 0

    # --- checkpoints -------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {
            "intervals": [list(pair) for pair in self.intervals],
            "order": self.order,
            "pacing": self.pacing,
            "patience": self.patience,
            "stage_steps": self.stage_steps,
            "smoothing": self.smoothing,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "settings": self._settings(),
            "stage": self.stage,
            "steps_in_stage": self._steps_in_stage,
            "ema": self._ema,
            "count": self._count,
            "best": self._best,
            "since_best": self._since_best,
            "transitions": [list(pair) for pair in self.transitions],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["settings"] != self._settings():
            raise ValueError(
                f"state_dict was saved by a curriculum with settings {state['settings']}, "
                f"this one has {self._settings()}"
            )
        self.stage = int(state["stage"])
        self._steps_in_stage = int(state["steps_in_stage"])
        self._ema, self._count = float(state["ema"]), int(state["count"])
        self._best, self._since_best = float(state["best"]), int(state["since_best"])
        self.transitions = [(int(s), int(k)) for s, k in state["transitions"]]


def transitions_from_losses(config: Config, losses: Sequence[float]) -> list[tuple[int, int]]:
    """Stage changes ``(step, stage entered)`` of a run of ``config`` with these per-step losses.

    Exact for a run trained by the Trainer: pacing depends only on the reported losses.
    """
    curriculum = CurriculumTimesteps.from_config(config)
    for step, loss in enumerate(losses, start=1):
        curriculum.observe(step, loss)
    return curriculum.transitions
