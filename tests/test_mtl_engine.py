"""Per-cluster gradients and the MTL engine against independent computations.

The independent reference for cluster i's gradient is a separate forward and backward of chunk
i alone through diffusion.per_sample_loss (a different code path from all three engine paths).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_diffusion import config
from mtl_diffusion.diffusion import per_sample_loss
from mtl_diffusion.mtl import (
    cagrad_weights,
    imtlg_weights,
    mgda_weights,
    nash_weights,
    pcgrad_weights,
)
from mtl_diffusion.mtl.cluster_gradients import (
    DenoisingBatch,
    check_fast_path,
    cluster_gradients,
)
from mtl_diffusion.mtl.engine import MTLEngine
from mtl_diffusion.train import Trainer
from mtl_diffusion.weighting import min_snr_weight

SMALL = {"model.hidden_size": 32, "model.depth": 2, "model.base_channels": 8}


def trainer(batch_size: int = 10, **overrides: object) -> Trainer:
    """A tiny stratified trainer (k = 5), trained 2 steps so no layer is at its zero init."""
    cfg = config.load(
        "smoke",
        {
            **SMALL,
            "timesteps.sampler": "stratified",
            "train.batch_size": batch_size,
            "diffusion.loss_weight": "min_snr",
            **overrides,
        },
    )
    tr = Trainer(cfg)
    for _ in range(2):
        tr.train_step()
    tr.optimizer.zero_grad(set_to_none=True)  # the engine's backward adds to p.grad
    return tr


def chunk_gradients(tr: Trainer, x0, t, noise, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, P) gradients and (k,) losses of L_i = sum over cluster i (samples i, i + k, ...) of
    w(t) * loss / B, cluster by cluster through per_sample_loss, with w = min-SNR(5) written
    out here."""
    params = [p for p in tr.model.parameters() if p.requires_grad]
    snr = tr.schedule.snr(t)
    weight = (torch.minimum(snr, torch.full_like(snr, 5.0)) / snr).float()
    rows, losses = [], []
    for i in range(k):
        part = slice(i, None, k)
        losses_b = per_sample_loss(tr.model, tr.schedule, x0[part], t[part], noise[part])
        loss = (weight[part] * losses_b).sum() / len(t)
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
        losses.append(loss.detach())
    return torch.stack(rows), torch.stack(losses)


@pytest.mark.parametrize("arch", ["unet", "dit"])
@pytest.mark.parametrize("batch_size", [10, 13])  # 2 samples per cluster; 3, 3, 3, 2, 2
def test_every_path_gives_the_exact_per_cluster_gradients(arch: str, batch_size: int) -> None:
    tr = trainer(batch_size, **{"model.arch": arch})
    x0, t, noise = tr.sample_batch()
    batch = tr.denoising_batch(x0, t, noise)
    assert torch.equal(batch.clusters, tr.timesteps.assignments(batch_size))
    expected, expected_losses = chunk_gradients(tr, x0, t, noise)
    assert (expected.norm(dim=1) > 0).all()
    for path in ("fast", "vmap", "reference"):
        result = cluster_gradients(tr.model, batch, path)
        torch.testing.assert_close(result.losses, expected_losses, rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(result.grads, expected, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(result.gramian(), expected @ expected.T, rtol=1e-4, atol=1e-9)


def test_fast_path_refuses_layers_it_does_not_cover() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="BatchNorm2d"):
        check_fast_path(model)
    with pytest.raises(ValueError, match="path must be one of"):
        cluster_gradients(model, None, "slow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_clusters must be an integer in"):
        DenoisingBatch(torch.zeros(4, 2), torch.zeros(4), torch.zeros(4, 2), torch.ones(4), 5)


def test_vanilla_through_the_engine_is_the_plain_weighted_mean_gradient() -> None:
    tr = trainer(10)
    x0, t, noise = tr.sample_batch()
    tr.engine.backward(tr.denoising_batch(x0, t, noise))
    engine_grads = [p.grad.clone() for p in tr.model.parameters()]
    tr.model.zero_grad()
    snr = tr.schedule.snr(t)
    weight = min_snr_weight(snr, 5.0, "eps").float()
    (weight * per_sample_loss(tr.model, tr.schedule, x0, t, noise)).mean().backward()
    for got, want in zip(engine_grads, [p.grad for p in tr.model.parameters()], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)


METHODS = {
    "pcgrad": None,  # needs the engine's seeded generator, see below
    "nash": nash_weights,
    "mgda": mgda_weights,
    "imtlg": imtlg_weights,
    "cagrad": cagrad_weights,
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_gradient_method_sets_the_weighted_sum_of_cluster_gradients(method: str) -> None:
    tr = trainer(13)
    engine = MTLEngine(tr.model, method, 5, seed=3)
    x0, t, noise = tr.sample_batch()
    batch = tr.denoising_batch(x0, t, noise)
    stats = engine.backward(batch)
    g, losses = chunk_gradients(tr, x0, t, noise)
    gramian = g.double() @ g.double().T
    if method == "pcgrad":
        w = pcgrad_weights(gramian, generator=torch.Generator().manual_seed(3))
    else:
        w = METHODS[method](gramian)
    torch.testing.assert_close(torch.tensor(stats.weights, dtype=w.dtype), w, rtol=1e-3, atol=1e-6)
    applied = torch.cat([p.grad.reshape(-1) for p in tr.model.parameters()])
    update = w.float() @ g
    if method == "nash":  # clipped at nash_max_norm = 1, as published
        update = update * min(1.0, 1.0 / float(update.norm()))
    torch.testing.assert_close(applied, update, rtol=1e-3, atol=1e-7)
    assert stats.cluster_losses == pytest.approx(losses.tolist(), rel=1e-5)


def test_nash_reuses_alpha_between_solves_and_clips_its_update() -> None:
    tr = trainer(10)
    engine = MTLEngine(tr.model, "nash", 5, nash_every=3, nash_max_norm=1e-4)
    solved = engine.backward(tr.denoising_batch(*tr.sample_batch())).weights
    assert engine.method.alpha is not None
    x0, t, noise = tr.sample_batch()
    batch = tr.denoising_batch(x0, t, noise)
    tr.model.zero_grad()
    reused = engine.backward(batch).weights  # step 2 of 3: same alpha, fresh gradients
    assert reused == solved
    g, _ = chunk_gradients(tr, x0, t, noise)
    update = torch.tensor(solved) @ g
    applied = torch.cat([p.grad.reshape(-1) for p in tr.model.parameters()])
    torch.testing.assert_close(applied, update * (1e-4 / update.norm()), rtol=1e-3, atol=1e-10)
    engine.backward(tr.denoising_batch(*tr.sample_batch()))
    assert engine.backward(tr.denoising_batch(*tr.sample_batch())).weights != solved  # step 4


def test_uncertainty_weighting_trains_its_own_parameter_group() -> None:
    tr = trainer(10, **{"mtl.method": "uw", "mtl.uw_lr": 0.025})
    group = tr.optimizer.param_groups[1]
    assert group["params"] == [tr.engine.method.s]
    assert group["lr"] == 0.025 and group["weight_decay"] == 0.0
    s_before = tr.engine.method.s.detach().clone()
    tr.train_step()
    assert not torch.equal(tr.engine.method.s, s_before)
    torch.testing.assert_close(torch.tensor(tr.last_stats.weights), 0.5 * torch.exp(-s_before))


def test_famo_updates_its_logits_after_each_step() -> None:
    tr = trainer(10, **{"mtl.method": "famo"})
    xi = tr.engine.method.xi.detach().clone()
    tr.train_step()
    assert not torch.equal(tr.engine.method.xi, xi)
    assert sum(tr.last_stats.weights) == pytest.approx(1.0, rel=1e-5)


def test_methods_other_than_vanilla_need_clusters() -> None:
    cfg = config.load("smoke", {**SMALL, "mtl.method": "pcgrad"})
    with pytest.raises(ValueError, match="timesteps.sampler='stratified'"):
        Trainer(cfg)
