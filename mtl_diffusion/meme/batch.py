"""One soft-assigned denoising batch for the MTL engine: all experts trained in one loop.

    engine = MTLEngine(model, "vanilla", model.num_experts)      # clusters = experts
    batch = soft_denoising_batch(schedule, x0, assignment, generator)
    engine.objective(batch).objective.backward(); optimizer.step()

The batch carries the expert of every sample twice: as its cluster id (so the engine's cluster
losses are the experts' losses) and as ``cond["expert"]``, which the engine passes on to
``model(x_t, t, expert=...)`` (split with the batch, like any per-sample conditioning).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtl_diffusion.diffusion import Schedule
from mtl_diffusion.meme.assignment import SoftAssignment
from mtl_diffusion.mtl.batch import DenoisingBatch


def soft_denoising_batch(
    schedule: Schedule,
    x0: Tensor,
    assignment: SoftAssignment,
    generator: torch.Generator,
    *,
    prediction: str = "eps",
    loss_weights: Tensor | None = None,
) -> DenoisingBatch:
    """x_t, target and (t, expert) of a batch of clean images ``x0`` under ``assignment``.

    t, the expert ids and the noise come from ``generator`` (a CPU generator; they move to x0's
    device). ``loss_weights``: an optional (T,) per-timestep weight (default 1).
    """
    if assignment.num_timesteps != schedule.T:
        raise ValueError(
            f"the assignment covers {assignment.num_timesteps} timesteps, the schedule {schedule.T}"
        )
    t, expert = assignment.draw(len(x0), generator)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    t, expert = t.to(x0.device), expert.to(x0.device)
    schedule = schedule.to(x0.device)
    weight = torch.ones(len(x0), dtype=x0.dtype, device=x0.device)
    if loss_weights is not None:
        weight = loss_weights.to(device=x0.device, dtype=x0.dtype)[t]
    return DenoisingBatch(
        x_t=schedule.q_sample(x0, t, noise),
        t=t,
        target=schedule.target(x0, noise, t, prediction),
        weight=weight,
        num_clusters=assignment.num_clusters,
        clusters=expert,
        cond={"expert": expert},
    )
