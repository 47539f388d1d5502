"""k experts over k contiguous timestep intervals, one denoiser ``forward(x_t, t)``.

Sample b goes to the expert whose inclusive interval holds t_b (or, for soft interval
assignment during training, to the expert named by ``expert[b]``); outputs come back in batch
order. Every sample's output depends on that sample alone (the experts are GroupNorm models),
so the MTL engine's per-cluster gradients are exact. Two dispatch modes:

- ``"sparse"`` (default): each expert runs on its own samples only (the cost of one model).
  Vanilla and every loss-based MTL method train it; gradient methods need
  ``gradient_path="reference"``: the fast path refuses it (its layers see sub-batches), and
  torch.func's vmap cannot split a batch by data-dependent masks.
- ``"dense"``: every expert runs on the whole batch and ``torch.where`` keeps each sample's
  own expert's output (k times the compute); exact under all three gradient paths. Timesteps are
  not range-checked in this mode (it must run under vmap), the schedule checks them upstream.

Sampling: the model is a denoiser like any other (``sampling.ddim_sample(model, ...)``); to mix
experts with a shared model use ``transfer.hybrid_denoiser(shared, dict(enumerate(model.experts)),
model.intervals, T)`` or ``sampling.piecewise_denoiser(model.intervals, model.experts)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtl_diffusion.clustering import Interval, cluster_index, validate_intervals
from mtl_diffusion.meme.blocks import check_ratio
from mtl_diffusion.meme.expert import MixedUNet

DISPATCH = ("sparse", "dense")


class MultiExpertDenoiser(nn.Module):
    """``experts[i]`` denoises the timesteps of ``intervals[i]`` (see the module doc)."""

    def __init__(
        self,
        experts: Sequence[nn.Module],
        intervals: Sequence[Interval],
        dispatch: str = "sparse",
    ) -> None:
        super().__init__()
        self.intervals = validate_intervals(intervals)
        if len(experts) != len(self.intervals):
            raise ValueError(
                f"experts and intervals must have the same length, got {len(experts)} experts "
                f"for {len(self.intervals)} intervals"
            )
        if dispatch not in DISPATCH:
            raise ValueError(f"dispatch must be one of {DISPATCH}, got {dispatch!r}")
        self.experts = nn.ModuleList(experts)
        self.dispatch = dispatch
        self.register_buffer(
            "starts", torch.tensor([s for s, _ in self.intervals[1:]], dtype=torch.long),
            persistent=False,
        )  # fmt: skip

    @property
    def num_timesteps(self) -> int:
        return self.intervals[-1][1] + 1

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def expert_index(self, t: Tensor) -> Tensor:
        """The expert of every timestep, (B,) long (t validated: integers in 0..T-1)."""
        return cluster_index(self.intervals, t)

    def forward(self, x_t: Tensor, t: Tensor, expert: Tensor | None = None) -> Tensor:
        """Each sample through its expert: the one of its t's interval, or ``expert[b]``."""
        size = len(x_t)
        if t.shape != (size,):
            raise ValueError(f"t must have shape ({size},), one timestep per sample")
        if expert is not None and (expert.shape != (size,) or expert.is_floating_point()):
            raise ValueError(f"expert must be an integer tensor of shape ({size},)")
        if self.dispatch == "dense":
            return self._dense(x_t, t, _interval_ids(t, self.starts) if expert is None else expert)
        try:
            ids = self.expert_index(t) if expert is None else self._checked(expert)
        except RuntimeError as err:  # torch.func.vmap refuses the data-dependent split
            if "vmap" not in str(err):
                raise
            raise RuntimeError(
                "MultiExpertDenoiser(dispatch='sparse') splits the batch by data-dependent "
                "masks, which torch.func.vmap (gradient_path='vmap') cannot do: use "
                "dispatch='dense' or gradient_path='reference'"
            ) from err
        out: Tensor | None = None
        for j, model in enumerate(self.experts):
            index = torch.nonzero(ids == j).flatten()
            if len(index) == size:
                return model(x_t, t)
            if len(index) == 0:
                continue
            part = model(x_t[index], t[index])
            if out is None:
                out = part.new_zeros((size, *part.shape[1:]))
            out = out.index_copy(0, index, part)
        assert out is not None  # every sample has an expert
        return out

    def _dense(self, x_t: Tensor, t: Tensor, ids: Tensor) -> Tensor:
        """Every expert on the whole batch; each sample keeps its own expert's output."""
        out = self.experts[0](x_t, t)
        for j in range(1, self.num_experts):
            keep = (ids == j).reshape(-1, *[1] * (x_t.dim() - 1))
            out = torch.where(keep, self.experts[j](x_t, t), out)
        return out

    def _checked(self, expert: Tensor) -> Tensor:
        if len(expert) and (int(expert.min()) < 0 or int(expert.max()) >= self.num_experts):
            raise ValueError(f"expert ids must lie in 0..{self.num_experts - 1}")
        return expert


def _interval_ids(t: Tensor, starts: Tensor) -> Tensor:
    """Interval index of every t (no range check: works under torch.func.vmap)."""
    return (t[:, None] >= starts.to(t.device)[None, :]).sum(dim=1)


def default_ratios(k: int, low: float = 0.25, high: float = 0.75) -> list[float]:
    """Attention fractions rising linearly from ``low`` (least-noisy interval) to ``high``
    (noisiest): more convolution where fine detail is denoised, more attention where only
    coarse structure is. A documented choice: the paper's per-expert ratios are not verified."""
    low, high = check_ratio(low, "low"), check_ratio(high, "high")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k == 1:
        return [(low + high) / 2]
    return [low + (high - low) * j / (k - 1) for j in range(k)]


def mixed_experts(
    intervals: Sequence[Interval],
    ratios: Sequence[float] | None = None,
    *,
    dispatch: str = "sparse",
    **expert_kwargs: object,
) -> MultiExpertDenoiser:
    """One :class:`MixedUNet` per interval, expert i with attention fraction ``ratios[i]``
    (default: :func:`default_ratios`); ``expert_kwargs`` go to every MixedUNet
    (``num_timesteps`` is the intervals' span)."""
    pairs = validate_intervals(intervals)
    ratios = default_ratios(len(pairs)) if ratios is None else list(ratios)
    if len(ratios) != len(pairs):
        raise ValueError(
            f"ratios must have one value per interval ({len(pairs)}), got {len(ratios)}"
        )
    if "num_timesteps" in expert_kwargs:
        raise ValueError("num_timesteps is the intervals' span; do not pass it")
    T = pairs[-1][1] + 1
    experts = [MixedUNet(ratio=r, num_timesteps=T, **expert_kwargs) for r in ratios]  # type: ignore[arg-type]
    return MultiExpertDenoiser(experts, pairs, dispatch)
