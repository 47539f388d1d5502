"""ScoreCL pair weights from the score values of the two views of every positive pair.

Default rule "abs_diff": d_i = |S(v1_i) - S(v2_i)|, then

    w_i = floor + (1 - floor) * d_i / mean(d)

so the weights have mean exactly 1 over the batch, the pair whose views differ most in how far
augmentation moved them counts most, and no pair drops below `floor` (0 < floor <= 1 keeps
every pair in the loss; floor = 1 gives equal weights). A batch whose differences are all 0
gets weights 1. Rule "none": all weights 1 (the plain loss). Weights carry no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

WEIGHT_RULES = ("abs_diff", "none")
DEFAULT_FLOOR = 0.1


@torch.no_grad()
def pair_weights(
    value1: Tensor, value2: Tensor, rule: str = "abs_diff", floor: float = DEFAULT_FLOOR
) -> Tensor:
    """Per-pair weights (N,) with mean 1 from the score values (N,) of the two views."""
    if rule not in WEIGHT_RULES:
        raise ValueError(f"rule must be one of {WEIGHT_RULES}, got {rule!r}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must lie in [0, 1], got {floor}")
    if value1.shape != value2.shape or value1.dim() != 1:
        raise ValueError(
            f"value1 and value2 must both have shape (N,), got {tuple(value1.shape)} and "
            f"{tuple(value2.shape)}"
        )
    ones = torch.ones_like(value1)
    if rule == "none":
        return ones
    diff = (value1 - value2).abs()
    mean = diff.mean()
    if mean == 0:
        return ones
    return floor + (1 - floor) * diff / mean
