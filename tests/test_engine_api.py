"""The Config-free engine in a user's own loop: autocast, GradScaler, gradient accumulation,
the method's own parameters, and the defaults it shares with the config."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

from mtl_diffusion.config import MTLConfig
from mtl_diffusion.models import build_model
from mtl_diffusion.mtl.batch import DenoisingBatch, interleaved_clusters, weighted_mse
from mtl_diffusion.mtl.cluster_gradients import cluster_gradients
from mtl_diffusion.mtl.engine import MTLEngine, NonFiniteLossError
from mtl_diffusion.mtl.pcgrad import pcgrad_weights

K = 3


def model() -> nn.Module:
    torch.manual_seed(0)
    net = build_model("unet", in_channels=1, base_channels=8, channel_mults=(1, 2), num_groups=4)
    with torch.no_grad():
        net.out_conv.weight.normal_(0, 0.05)  # leave the zero init, so every layer has a gradient
    return net


def batch(size: int = 12, seed: int = 1) -> DenoisingBatch:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 1, 8, 8, generator=gen)
    t = torch.randint(0, 1000, (size,), generator=gen)
    return DenoisingBatch(
        x,
        t,
        torch.randn(x.shape, generator=gen),
        torch.ones(size),
        K,
        interleaved_clusters(size, K),
    )


def grads(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()])


def test_the_objective_adds_the_pcgrad_update_to_existing_gradients() -> None:
    net, b = model(), batch()
    engine = MTLEngine(net, "pcgrad", K, seed=2)
    for p in net.parameters():
        p.grad = torch.ones_like(p)  # e.g. a previous micro-batch
    engine.objective(b).objective.backward()
    g = cluster_gradients(net, b, "reference").grads.double()
    w = pcgrad_weights(g @ g.T, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(grads(net), 1.0 + (w @ g).float(), rtol=1e-4, atol=1e-6)


def test_gradient_accumulation_over_micro_batches() -> None:
    """vanilla: two halves, each objective / 2, give the gradient of their union; pcgrad: the
    sum of the two micro-batches' own updates."""
    halves = [batch(6, seed) for seed in (3, 4)]
    fields = ("x_t", "t", "target", "weight", "clusters")
    union = DenoisingBatch(
        **{f: torch.cat([getattr(h, f) for h in halves]) for f in fields}, num_clusters=K
    )
    net = model()
    engine = MTLEngine(net, "vanilla", K)
    for h in halves:
        (engine.objective(h).objective / 2).backward()
    accumulated = grads(net)
    net.zero_grad()
    engine.objective(union).objective.backward()
    torch.testing.assert_close(accumulated, grads(net), rtol=1e-5, atol=1e-8)

    net.zero_grad()
    engine, gen, expected = MTLEngine(net, "pcgrad", K, seed=0), torch.Generator().manual_seed(0), 0
    for h in halves:
        engine.objective(h).objective.backward()
        g = cluster_gradients(net, h, "reference").grads.double()
        expected = expected + (pcgrad_weights(g @ g.T, generator=gen) @ g).float()
    torch.testing.assert_close(grads(net), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["vanilla", "pcgrad", "nash"])
def test_bf16_autocast_on_the_cpu(method: str) -> None:
    """Under autocast the step runs in bf16 while the per-cluster gradients, the Gramian and
    the update stay float32; the update is within bf16 rounding of the float32 one."""
    b = batch()
    updates = []
    for enabled in (False, True):
        net = model()
        engine = MTLEngine(net, method, K)
        with torch.autocast("cpu", torch.bfloat16, enabled=enabled):
            step = engine.objective(b)
        step.objective.backward()
        assert all(p.grad.dtype == torch.float32 for p in net.parameters())
        if engine._grads is not None:
            assert engine._grads.dtype == torch.float32
        updates.append(grads(net))
    fp32, bf16 = updates
    assert torch.isfinite(bf16).all()
    assert (bf16 - fp32).norm() < 0.05 * fp32.norm()


@pytest.mark.parametrize("method", ["uw", "pcgrad", "nash"])
def test_a_grad_scaler_step_equals_the_unscaled_step(method: str) -> None:
    b = batch()
    results = []
    for scaled in (False, True):
        net = model()
        engine = MTLEngine(net, method, K, nash_every=1)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        engine.attach(optimizer)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, enabled=scaled)
        step = engine.objective(b, loss_scale=scaler.get_scale() if scaled else 1.0)
        scaler.scale(step.objective).backward()
        scaler.step(optimizer)
        scaler.update()
        results.append(torch.cat([p.detach().reshape(-1) for p in net.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-7)


def test_a_grad_scaler_skips_an_overflowing_gradient_step() -> None:
    net, b = model(), batch()
    b = dataclasses.replace(b, target=1e4 * b.target)  # losses ~1e8: scaled, they overflow
    engine = MTLEngine(net, "pcgrad", K)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=3e38)
    step = engine.objective(b, loss_scale=scaler.get_scale())
    scaler.scale(step.objective).backward()
    scaler.step(optimizer)
    scaler.update()
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))
    assert scaler.get_scale() < 3e38
    with pytest.raises(NonFiniteLossError, match="loss is"):  # without a scaler: an error
        engine.objective(dataclasses.replace(b, target=b.target * float("inf")))


def test_uncertainty_weighting_refuses_to_run_outside_an_optimizer() -> None:
    net, b = model(), batch()
    engine = MTLEngine(net, "uw", K)
    with pytest.raises(RuntimeError, match="engine.attach\\(optimizer\\)"):
        engine.objective(b)
    optimizer = torch.optim.Adam(net.parameters())
    engine.attach(optimizer)
    engine.attach(optimizer)  # idempotent
    assert optimizer.param_groups[1]["params"] == [engine.method.s]
    assert len(optimizer.param_groups) == 2
    engine.objective(b).objective.backward()
    s = engine.method.s.detach().clone()
    optimizer.step()
    assert not torch.equal(engine.method.s, s)


def test_famo_refuses_a_second_step_without_its_update() -> None:
    net, b = model(), batch()
    engine = MTLEngine(net, "famo", K)
    engine.objective(b).objective.backward()
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    with pytest.raises(RuntimeError, match="call engine.after_step\\(batch\\)"):
        engine.objective(b)
    xi = engine.method.xi.detach().clone()
    engine.after_step(b)
    assert not torch.equal(engine.method.xi, xi)
    engine.objective(b)


def test_engine_defaults_are_the_config_defaults() -> None:
    """Users of the engine alone get ANT's Nash settings, like the Trainer (25, 1.0)."""
    parameters = inspect.signature(MTLEngine).parameters
    defaults = MTLConfig()
    for name in ("nash_every", "nash_max_norm", "uw_lr", "self_check"):
        assert parameters[name].default == getattr(defaults, name), name
    assert parameters["path"].default == defaults.gradient_path
    assert parameters["loss"].default is weighted_mse
