"""The score network of ScoreCL and the score value of a view.

A denoiser trained by denoising score matching (the project's epsilon-prediction U-Net and
Trainer, restricted to low noise levels) gives the score of the noised data distribution,

    s_theta(x, t) = -eps_theta(x, t) / sqrt(1 - alpha_bar_t),

and the score value of a view v is S(v) = || s_theta(v, t_small) ||_2 at one small fixed t. The
view itself is fed in without adding noise: a clean digit looks like a low-noise sample and gets
a small predicted noise; augmentation moves it off the data, and the denoiser answers with a
larger correction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mtl_diffusion.diffusion import Schedule
from mtl_diffusion.scorecl.augment import augment


class ScoreFunction:
    """s_theta(x, t) of an epsilon-prediction denoiser at one fixed timestep `t`."""

    def __init__(self, model: nn.Module, schedule: Schedule, t: int, batch_size: int = 1024):
        if not 0 <= t < schedule.T:
            raise ValueError(f"t must lie in [0, {schedule.T - 1}], got {t}")
        self.model = model.eval()
        self.schedule = schedule
        self.t = t
        self.batch_size = batch_size
        self.sigma = float((1 - schedule.alphas_cumprod[t]).sqrt())

    @torch.no_grad()
    def score(self, x: Tensor) -> Tensor:
        """-eps_theta(x, t) / sqrt(1 - alpha_bar_t), shaped like x."""
        parts = []
        for chunk in x.split(self.batch_size):
            t = torch.full((len(chunk),), self.t, dtype=torch.long)
            parts.append(-self.model(chunk, t) / self.sigma)
        return torch.cat(parts)

    def value(self, x: Tensor) -> Tensor:
        """Score value S(x) = ||s_theta(x, t)||_2 per image, shape (B,)."""
        return self.score(x).flatten(1).norm(dim=1)


def score_by_strength(
    score: ScoreFunction,
    images: Tensor,
    kinds: Sequence[str],
    strengths: Sequence[float],
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Score values of `images` augmented by one type at a time: kind -> (len(strengths), N).

    Every (kind, strength) cell draws its views from a generator seeded with `seed`, so the
    same random directions are scaled up as the strength grows (common random numbers).
    """
    result = {}
    for kind in kinds:
        rows = []
        for strength in strengths:
            generator = torch.Generator().manual_seed(seed)
            rows.append(score.value(augment(images, {kind: strength}, generator)).numpy())
        result[kind] = np.stack(rows)
    return result
