"""Soft interval assignment: which timesteps each expert trains on.

With probability p_j expert j trains on a t drawn uniformly from its own interval, otherwise
on a t drawn from outside it (``outside="complement"``: uniform over the timesteps of the other
intervals; ``"all"``: uniform over all T timesteps, its own interval included). A little
training away from its interval keeps an expert sensible near its boundaries.

Unverified: the MEME paper names a soft interval assignment but its exact rule is not checked
here. The default probabilities (``"secondary"``) follow a secondary source's
p = 0.8, 0.4, 0.2, 0.1 for the four experts, taken in interval order (expert 0 the least noisy);
for k != 4 we continue the same halving, p_j = 0.8 / 2**j. ``"hard"`` is p_j = 1 (always the
own interval: plain interval experts). Any other choice: pass the k probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtl_diffusion.clustering import Interval, validate_intervals
from mtl_diffusion.meme.blocks import check_ratio

PROBABILITIES = ("secondary", "hard")
OUTSIDE = ("complement", "all")
SECONDARY_FIRST, SECONDARY_FACTOR = 0.8, 0.5  # p_j = 0.8 * 0.5**j: 0.8, 0.4, 0.2, 0.1 at k = 4


def own_interval_probabilities(k: int, choice: str | Sequence[float] = "secondary") -> list[float]:
    """p_j, the probability that expert j trains on its own interval, for j = 0..k-1."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if isinstance(choice, str):
        if choice not in PROBABILITIES:
            raise ValueError(
                f"probabilities must be one of {PROBABILITIES} or k floats, got {choice!r}"
            )
        if choice == "hard" or k == 1:  # k = 1: no timestep lies outside the one interval
            return [1.0] * k
        return [SECONDARY_FIRST * SECONDARY_FACTOR**j for j in range(k)]
    values = list(choice)
    if len(values) != k:
        raise ValueError(f"probabilities must have k = {k} values, got {len(values)}")
    return [check_ratio(p, f"probabilities[{j}]") for j, p in enumerate(values)]


class SoftIntervalTimesteps:
    """One expert's timestep sampler: own interval with probability ``p``, else outside it.

    Has the timestep-sampler interface (``sample(batch_size, generator)``), so
    ``train.Trainer(config, model=expert, timesteps=...)`` trains one expert at a time. With
    p = 1 it draws exactly what ``timesteps.UniformTimesteps(T, start, end)`` draws.
    """

    def __init__(
        self,
        intervals: Sequence[Interval],
        expert: int,
        p: float = 1.0,
        outside: str = "complement",
    ) -> None:
        self.intervals = validate_intervals(intervals)
        if not 0 <= expert < len(self.intervals):
            raise ValueError(f"expert must lie in 0..{len(self.intervals) - 1}, got {expert}")
        if outside not in OUTSIDE:
            raise ValueError(f"outside must be one of {OUTSIDE}, got {outside!r}")
        self.p, self.outside, self.expert = check_ratio(p, "p"), outside, expert
        self.num_timesteps = self.intervals[-1][1] + 1
        self.start, self.end = self.intervals[expert]
        self.width = self.end - self.start + 1
        if self.p < 1.0 and self.width == self.num_timesteps:
            raise ValueError(
                f"p={p} < 1 needs timesteps outside expert {expert}'s interval, but it covers "
                f"all {self.num_timesteps}"
            )

    def own_fraction(self) -> float:
        """The probability that a drawn t lies in the expert's own interval."""
        if self.outside == "all":
            return self.p + (1.0 - self.p) * self.width / self.num_timesteps
        return self.p

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(batch_size,) long timesteps, drawn from ``generator``."""
        own = torch.randint(self.start, self.end + 1, (batch_size,), generator=generator)
        if self.p == 1.0:
            return own
        keep = torch.rand(batch_size, generator=generator) < self.p
        if self.outside == "all":
            away = torch.randint(0, self.num_timesteps, (batch_size,), generator=generator)
        else:  # uniform over the T - width timesteps outside [start, end]
            away = torch.randint(
                0, self.num_timesteps - self.width, (batch_size,), generator=generator
            )
            away = away + (away >= self.start).long() * self.width
        return torch.where(keep, own, away)


class SoftAssignment:
    """All experts in one batch: sample b belongs to expert b mod k (the engine's interleaved
    cluster layout) and its t is drawn by that expert's :class:`SoftIntervalTimesteps`.

    ``draw`` returns (t, expert ids): the model must be told the ids (``MultiExpertDenoiser
    (x_t, t, expert=ids)``), since under soft assignment t alone no longer names the expert.
    With ``probabilities="hard"`` the draws equal ``timesteps.StratifiedTimesteps(intervals)``'s
    and routing by t gives the same experts.
    """

    def __init__(
        self,
        intervals: Sequence[Interval],
        probabilities: str | Sequence[float] = "secondary",
        outside: str = "complement",
    ) -> None:
        self.intervals = validate_intervals(intervals)
        self.probabilities = own_interval_probabilities(len(self.intervals), probabilities)
        self.experts = [
            SoftIntervalTimesteps(self.intervals, j, p, outside)
            for j, p in enumerate(self.probabilities)
        ]
        self.num_timesteps = self.intervals[-1][1] + 1

    @property
    def num_clusters(self) -> int:
        return len(self.intervals)

    def assignments(self, batch_size: int) -> torch.Tensor:
        """Expert of every sample of a batch: b mod k, (batch_size,); every expert present."""
        k = self.num_clusters
        if batch_size < k:
            raise ValueError(f"batch_size must be >= the number of experts ({k}), got {batch_size}")
        return torch.arange(batch_size) % k

    def draw(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, expert) for a batch, both (batch_size,) long."""
        expert = self.assignments(batch_size)
        t = torch.empty(batch_size, dtype=torch.long)
        k = self.num_clusters
        for j, sampler in enumerate(self.experts):
            t[j::k] = sampler.sample(len(range(j, batch_size, k)), generator)
        return t, expert
