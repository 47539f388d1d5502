"""The multi-expert denoiser: routing against a direct per-sample loop, gradients through the
MTL engine against a per-sample reference, what the fast path and vmap accept, sampling with
the project's piecewise / hybrid denoisers."""

from __future__ import annotations

import pytest
import torch

from mtl_diffusion.diffusion import make_schedule
from mtl_diffusion.meme import (
    MixedUNet,
    MultiExpertDenoiser,
    SoftAssignment,
    mixed_experts,
    soft_denoising_batch,
)
from mtl_diffusion.mtl.batch import DenoisingBatch
from mtl_diffusion.mtl.cluster_gradients import cluster_gradients
from mtl_diffusion.mtl.engine import MTLEngine
from mtl_diffusion.mtl.fast_path import FastPathError
from mtl_diffusion.sampling import ddim_sample, piecewise_denoiser
from mtl_diffusion.transfer import hybrid_denoiser

T = 50
INTERVALS = [(0, 9), (10, 29), (30, 49)]


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return module


def experts(dispatch: str = "sparse") -> MultiExpertDenoiser:
    model = mixed_experts(
        INTERVALS, [0.0, 0.5, 1.0], dispatch=dispatch, base_channels=8, channel_mults=(1, 2),
        num_heads=2, num_groups=4,
    )  # fmt: skip
    return randomize(model)


def owner(t: int) -> int:
    """The interval holding t, by a plain scan."""
    return next(i for i, (s, e) in enumerate(INTERVALS) if s <= t <= e)


GEN = torch.Generator().manual_seed(3)
X = torch.randn(9, 1, 8, 8, generator=GEN)
TS = torch.tensor([0, 9, 10, 29, 30, 49, 5, 20, 40])  # every boundary, shuffled experts
TARGET = torch.randn(9, 1, 8, 8, generator=GEN)


def loop_output(model: MultiExpertDenoiser, x, t, ids=None) -> torch.Tensor:
    rows = []
    for b in range(len(x)):
        j = owner(int(t[b])) if ids is None else int(ids[b])
        rows.append(model.experts[j](x[b : b + 1], t[b : b + 1]))
    return torch.cat(rows)


@pytest.mark.parametrize("dispatch", ["sparse", "dense"])
def test_routing_equals_a_per_sample_loop(dispatch: str) -> None:
    model = experts(dispatch)
    torch.testing.assert_close(model(X, TS), loop_output(model, X, TS), rtol=1e-5, atol=1e-6)
    assert model.expert_index(TS).tolist() == [owner(int(t)) for t in TS]


@pytest.mark.parametrize("dispatch", ["sparse", "dense"])
def test_explicit_expert_ids_override_the_interval(dispatch: str) -> None:
    model = experts(dispatch)
    ids = torch.tensor([2, 2, 0, 1, 0, 0, 1, 2, 1])
    got = model(X, TS, expert=ids)
    torch.testing.assert_close(got, loop_output(model, X, TS, ids), rtol=1e-5, atol=1e-6)


def test_a_batch_inside_one_interval_goes_to_its_expert_only() -> None:
    model = experts()
    t = torch.full((9,), 12)
    torch.testing.assert_close(model(X, t), model.experts[1](X, t), rtol=0, atol=0)


def test_bad_inputs_are_refused() -> None:
    expert = MixedUNet(base_channels=8, num_heads=2, num_groups=4, num_timesteps=T)
    with pytest.raises(ValueError, match="same length"):
        MultiExpertDenoiser([expert], INTERVALS)
    with pytest.raises(ValueError, match="contiguous"):
        MultiExpertDenoiser([expert, expert], [(0, 9), (11, 49)])
    with pytest.raises(ValueError, match="dispatch"):
        MultiExpertDenoiser([expert], [(0, 49)], dispatch="scatter")
    model = experts()
    with pytest.raises(ValueError, match="0..T-1"):
        model(X, TS + 1)
    with pytest.raises(ValueError, match="expert ids"):
        model(X, TS, expert=torch.full((9,), 3))
    with pytest.raises(ValueError, match="shape"):
        model(X, TS[:4])


def loop_loss(model: MultiExpertDenoiser, ids=None) -> torch.Tensor:
    """The batch-mean MSE, each sample through its own expert alone."""
    out = loop_output(model, X, TS, ids)
    return ((out - TARGET) ** 2).flatten(1).mean(1).mean()


def grads_of(model: torch.nn.Module, loss: torch.Tensor, retain: bool = False) -> torch.Tensor:
    params = list(model.parameters())
    gs = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=retain)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).flatten()
            for g, p in zip(gs, params, strict=True)
        ]
    )


def test_vanilla_engine_gradient_equals_the_per_sample_reference() -> None:
    model = experts()
    batch = DenoisingBatch(X, TS, TARGET, torch.ones(9))
    engine = MTLEngine(model, "vanilla", 1)
    model.zero_grad()
    engine.objective(batch).objective.backward()
    got = torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                     for p in model.parameters()])  # fmt: skip
    torch.testing.assert_close(got, grads_of(model, loop_loss(model)), rtol=1e-4, atol=1e-7)


def expert_gradients(model: MultiExpertDenoiser, ids: torch.Tensor) -> torch.Tensor:
    """(k, P): row i the gradient of (1 / B) sum over cluster i's samples, by the loop."""
    per_sample = ((loop_output(model, X, TS, ids) - TARGET) ** 2).flatten(1).mean(1)
    losses = [(per_sample * (ids == i)).sum() / len(X) for i in range(model.num_experts)]
    return torch.stack([grads_of(model, loss, retain=True) for loss in losses])


@pytest.mark.parametrize("dispatch, path", [("sparse", "reference"), ("dense", "fast")])
def test_per_expert_gradients_equal_the_loop(dispatch: str, path: str) -> None:
    model = experts(dispatch)
    ids = model.expert_index(TS)
    batch = DenoisingBatch(X, TS, TARGET, torch.ones(9), 3, ids)
    got = cluster_gradients(model, batch, path).grads
    torch.testing.assert_close(got, expert_gradients(model, ids), rtol=1e-4, atol=1e-7)


def test_pcgrad_through_the_engine_on_dense_experts() -> None:
    """Experts share no parameter: the per-expert gradients never conflict, PCGrad adds them."""
    model = experts("dense")
    ids = model.expert_index(TS)
    batch = DenoisingBatch(X, TS, TARGET, torch.ones(9), 3, ids)
    engine = MTLEngine(model, "pcgrad", 3, path="fast")  # self-checks against the reference
    model.zero_grad()
    engine.objective(batch).objective.backward()
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(got, expert_gradients(model, ids).sum(0), rtol=1e-4, atol=1e-7)


def test_sparse_dispatch_is_refused_by_fast_and_vmap_paths() -> None:
    model = experts("sparse")
    batch = DenoisingBatch(X, TS, TARGET, torch.ones(9), 3, model.expert_index(TS))
    with pytest.raises(FastPathError, match="reference"):
        MTLEngine(model, "pcgrad", 3, path="fast").objective(batch)
    with pytest.raises(RuntimeError, match="dispatch='dense'"):
        cluster_gradients(model, batch, "vmap")


def test_soft_batch_trains_each_sample_on_its_assigned_expert() -> None:
    model = experts()
    schedule = make_schedule("linear", T)
    assignment = SoftAssignment(INTERVALS, (0.5, 0.5, 0.5))
    gen = torch.Generator().manual_seed(4)
    batch = soft_denoising_batch(schedule, X, assignment, gen)
    ids = batch.cond["expert"]
    assert torch.equal(ids, torch.arange(9) % 3) and torch.equal(batch.clusters, ids)
    assert (model.expert_index(batch.t) != ids).any()  # some samples trained off-interval
    engine = MTLEngine(model, "vanilla", 3)
    model.zero_grad()
    engine.objective(batch).objective.backward()
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    rows = [model.experts[int(ids[b])](batch.x_t[b : b + 1], batch.t[b : b + 1]) for b in range(9)]
    loss = ((torch.cat(rows) - batch.target) ** 2).flatten(1).mean(1).mean()
    torch.testing.assert_close(got, grads_of(model, loss), rtol=1e-4, atol=1e-7)


def test_sampling_matches_the_project_piecewise_and_hybrid_denoisers() -> None:
    model = experts().eval()
    schedule = make_schedule("linear", T)
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    args = {"steps": 8, "progress_bar": False}
    direct = ddim_sample(model, schedule, noise, **args)
    piecewise = ddim_sample(
        piecewise_denoiser(INTERVALS, list(model.experts)), schedule, noise, **args
    )
    shared = MixedUNet(base_channels=8, num_heads=2, num_groups=4, num_timesteps=T)
    hybrid = hybrid_denoiser(shared, dict(enumerate(model.experts)), INTERVALS, T)
    torch.testing.assert_close(direct, piecewise, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        direct, ddim_sample(hybrid, schedule, noise, **args), rtol=1e-5, atol=1e-6
    )
