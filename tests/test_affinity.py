"""Task affinity against per-bin autograd loops, direct Gram matrices and hand-made SGD steps."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_diffusion import config, paths
from mtl_diffusion.affinity import (
    CPU_STEPS,
    affinity_run_steps,
    bin_edges,
    bin_gradients,
    bin_losses,
    default_snapshots,
    estimate_affinity,
    gradient_affinity,
    gradient_gram,
    gram_to_cosine,
    lookahead_affinity,
    make_eval_set,
    mean_by_distance,
    precompute_affinity,
    task_affinity,
    training_snapshots,
    vanilla_config,
)
from mtl_diffusion.diffusion import make_schedule, per_sample_loss
from mtl_diffusion.models import DiT, UNet

T = 12  # G = T = 12 bins of width 1 and G = 4 bins of width 3 both occur below


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Small random values everywhere (zero-initialised output layers included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return model


MODELS = {
    "unet": lambda: randomize(UNet(base_channels=8, num_groups=4, num_timesteps=T)),
    "dit": lambda: randomize(DiT(hidden_size=16, depth=1, num_heads=2, num_timesteps=T)),
}


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("cosine", T)


def loop_gradients(model, schedule, eval_set, prediction="eps") -> torch.Tensor:
    """Reference: one ordinary forward/backward per bin through per_sample_loss."""
    rows = []
    for b in range(eval_set.num_bins):
        model.zero_grad()
        losses = per_sample_loss(
            model, schedule, eval_set.x0, eval_set.t[b], eval_set.noise, prediction
        )
        losses.mean().backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    return torch.stack(rows).double()


def direct_cosine(vectors: torch.Tensor) -> np.ndarray:
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    return (unit @ unit.T).numpy()


def test_bin_edges() -> None:
    assert bin_edges(1000, 20).tolist() == list(range(0, 1001, 50))
    assert bin_edges(7, 7).tolist() == list(range(8))  # G = T: one timestep per bin
    assert bin_edges(7, 1).tolist() == [0, 7]
    for bad in (3, 0, 14, 2.0, True):
        with pytest.raises(ValueError, match="num_bins"):
            bin_edges(12 if bad != 3 else 10, bad)
    with pytest.raises(ValueError, match="num_timesteps"):
        bin_edges(0, 1)


def test_eval_set_is_fixed_by_the_seed(data) -> None:
    a = make_eval_set(data, T, 4, 5, seed=3)
    b = make_eval_set(data, T, 4, 5, seed=3)
    c = make_eval_set(data, T, 4, 5, seed=4)
    assert a.x0.shape == a.noise.shape == (5, 1, 8, 8) and a.t.shape == (4, 5)
    for name in ("x0", "noise", "t"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.noise, c.noise)
    edges = bin_edges(T, 4)
    for row, t in enumerate(a.t):
        assert ((t >= edges[row]) & (t < edges[row + 1])).all()
    # distinct images, taken from the data
    matches = (a.x0[:, None] == data[None]).flatten(2).all(-1)
    assert (matches.sum(1) == 1).all() and len(set(matches.float().argmax(1).tolist())) == 5
    with pytest.raises(ValueError, match="samples_per_bin"):
        make_eval_set(data, T, 4, 21)


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_vmap_gradients_equal_a_per_bin_autograd_loop(data, schedule, arch, prediction) -> None:
    model = MODELS[arch]()
    eval_set = make_eval_set(data, T, 4, 3, seed=0)
    reference = loop_gradients(model, schedule, eval_set, prediction)
    vmapped = bin_gradients(model, schedule, eval_set, range(4), prediction).double()
    torch.testing.assert_close(vmapped, reference, rtol=1e-4, atol=1e-6)
    # bins in any order and subset
    torch.testing.assert_close(
        bin_gradients(model, schedule, eval_set, [3, 1], prediction).double(),
        reference[[3, 1]],
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "num_bins, block_size, max_vectors",
    [(T, None, None), (T, 5, None), (6, 1, 2), (6, 2, 3), (6, 2, 5), (6, 4, 5), (6, 6, 10)],
)
def test_blocked_gram_equals_the_direct_computation(
    data, schedule, num_bins, block_size, max_vectors
) -> None:
    model = MODELS["unet"]()
    eval_set = make_eval_set(data, T, num_bins, 2, seed=0)  # num_bins = T: one task per timestep
    vectors = loop_gradients(model, schedule, eval_set)
    direct = (vectors @ vectors.T).numpy()
    gram = gradient_gram(model, schedule, eval_set, block_size, max_vectors).numpy()
    np.testing.assert_allclose(gram, direct, rtol=1e-4, atol=1e-6 * np.abs(direct).max())
    cosine = gradient_affinity(model, schedule, eval_set, block_size, max_vectors)
    np.testing.assert_allclose(cosine, direct_cosine(vectors), atol=1e-5)
    assert np.array_equal(cosine, cosine.T)
    assert np.array_equal(np.diag(cosine), np.ones(num_bins))
    assert np.abs(cosine).max() <= 1.0


def test_gradient_affinity_is_deterministic_for_a_seed(data, schedule) -> None:
    model = MODELS["dit"]()
    first = gradient_affinity(model, schedule, make_eval_set(data, T, 4, 3, seed=5))
    again = gradient_affinity(model, schedule, make_eval_set(data, T, 4, 3, seed=5))
    other = gradient_affinity(model, schedule, make_eval_set(data, T, 4, 3, seed=6))
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_bin_losses_equal_per_sample_loss(data, schedule) -> None:
    model = MODELS["unet"]()
    eval_set = make_eval_set(data, T, 6, 3, seed=0)
    with torch.no_grad():
        expected = [
            per_sample_loss(model, schedule, eval_set.x0, t, eval_set.noise).double().mean()
            for t in eval_set.t
        ]
    for block_size in (None, 1, 4):
        torch.testing.assert_close(
            bin_losses(model, schedule, eval_set, block_size=block_size),
            torch.stack(expected),
            rtol=1e-5,
            atol=0,
        )


def test_lookahead_matches_a_hand_made_sgd_step(data, schedule) -> None:
    model = MODELS["unet"]()
    eval_set = make_eval_set(data, T, 4, 3, seed=2)
    lr = 0.05

    def losses(net) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack(
                [
                    per_sample_loss(net, schedule, eval_set.x0, t, eval_set.noise).double().mean()
                    for t in eval_set.t
                ]
            )

    before = losses(model)
    expected = np.empty((4, 4))
    for i in range(4):
        stepped = copy.deepcopy(model)
        optimizer = torch.optim.SGD(stepped.parameters(), lr=lr)
        per_sample_loss(
            stepped, schedule, eval_set.x0, eval_set.t[i], eval_set.noise
        ).mean().backward()
        optimizer.step()
        expected[i] = (1.0 - losses(stepped) / before).numpy()
    got = lookahead_affinity(model, schedule, eval_set, lr=lr, block_size=3)
    assert np.abs(expected).max() > 1e-2  # the step moves the losses well above rounding
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # the model itself is left untouched
    torch.testing.assert_close(losses(model), before)


def test_errors(data, schedule) -> None:
    model = MODELS["unet"]()
    eval_set = make_eval_set(data, T, 4, 2, seed=0)
    with pytest.raises(ValueError, match="max_vectors"):
        gradient_gram(model, schedule, eval_set, block_size=2, max_vectors=2)
    with pytest.raises(ValueError, match="block_size"):
        gradient_gram(model, schedule, eval_set, block_size=0)
    with pytest.raises(ValueError, match="lr"):
        lookahead_affinity(model, schedule, eval_set, lr=0.0)
    with pytest.raises(ValueError, match="zero gradient"):
        gram_to_cosine(np.diag([1.0, 0.0]))
    with pytest.raises(ValueError, match="prediction"):
        bin_gradients(model, schedule, eval_set, [0], "score")


def test_mean_by_distance_is_the_mean_over_each_band() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(7, 7))  # not symmetric: both triangles count
    i, j = np.indices(matrix.shape)
    expected = [matrix[np.abs(i - j) == d].mean() for d in range(1, 7)]
    np.testing.assert_allclose(mean_by_distance(matrix), expected)
    with pytest.raises(ValueError, match="matrix"):
        mean_by_distance(np.ones((2, 3)))


def test_vanilla_config_resets_only_the_training_method() -> None:
    ant = config.load(
        "smoke",
        {"mtl.method": "uw", "mtl.clustering": "affinity", "timesteps.sampler": "stratified"},
        seed=2,
    )
    plain = vanilla_config(ant)
    smoke = config.load("smoke")
    assert plain.mtl == smoke.mtl and plain.timesteps == smoke.timesteps
    assert plain.model == ant.model and plain.diffusion == ant.diffusion and plain.seed == 2
    assert (plain.train.steps, plain.train.lr) == (ant.train.steps, ant.train.lr)
    # intervals that do not change the trained weights do not change the cache key either
    logging = config.load("smoke", {"train.eval_every": 3, "train.log_every": 1}, seed=2)
    assert vanilla_config(logging) == plain
    assert vanilla_config(config.load("smoke", {"train.lr": 0.01})).train.lr == 0.01
    assert default_snapshots(config.load("cpu")) == (375, 750, 1125, 1500)


def test_task_affinity_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path)
    cfg = config.load("smoke", {"train.steps": 4, "train.batch_size": 8})
    tas = task_affinity(cfg, 5, snapshots=(0, 4), samples_per_bin=4)
    assert tas.shape == (5, 5) and np.array_equal(tas, tas.T)
    assert np.array_equal(np.diag(tas), np.ones(5)) and np.abs(tas).max() <= 1
    estimate = estimate_affinity(cfg, 5, snapshots=(0, 4), samples_per_bin=4)
    assert estimate.matrices.shape == (2, 5, 5) and estimate.losses.shape == (2, 5)
    np.testing.assert_array_equal(estimate.mean, tas)  # loaded from the cache
    # the snapshot at step 4 is the model trained by the Trainer for 4 steps
    snaps = training_snapshots(cfg, (0, 4))
    assert snaps.steps == (0, 4) and len(snaps.losses) == 4
    assert not torch.equal(snaps.states[0]["out_conv.weight"], snaps.states[1]["out_conv.weight"])
    with pytest.raises(ValueError, match="snapshots"):
        task_affinity(cfg, 5, snapshots=(4, 4))
    with pytest.raises(ValueError, match="estimator"):
        estimate_affinity(cfg, 5, estimator="hessian")
    with pytest.raises(ValueError, match="num_bins"):
        task_affinity(cfg, 7)


def test_precompute_in_workers_fills_the_cache_with_the_in_process_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parallel, serial = tmp_path / "parallel", tmp_path / "serial"
    configs = [
        config.load("smoke", {"train.steps": 4, "train.batch_size": 8}, seed=s) for s in (0, 1)
    ]
    lookahead = {"samples_per_bin": 2}
    monkeypatch.setattr(paths, "ARTIFACTS", parallel)
    monkeypatch.setenv("MTL_DIFFUSION_ARTIFACTS", str(parallel))  # seen by the workers
    precompute_affinity(configs, 5, lookahead=lookahead, jobs=2)
    assert len(list((parallel / "smoke" / "cache").glob("task_affinity-*.pt"))) == 4
    monkeypatch.setattr(paths, "ARTIFACTS", serial)
    for cfg in configs:
        for kwargs in ({}, {"estimator": "lookahead", **lookahead}):
            fresh = estimate_affinity(cfg, 5, **kwargs)  # computed here, in this process
            monkeypatch.setattr(paths, "ARTIFACTS", parallel)
            cached = estimate_affinity(cfg, 5, **kwargs)
            monkeypatch.setattr(paths, "ARTIFACTS", serial)
            np.testing.assert_allclose(cached.matrices, fresh.matrices, atol=1e-6)
    assert len(list((parallel / "smoke" / "cache").glob("task_affinity-*.pt"))) == 4


def test_affinity_run_steps_default_only_under_cpu() -> None:
    assert affinity_run_steps("cpu") == {"train.steps": CPU_STEPS}
    assert affinity_run_steps("smoke") == {} and affinity_run_steps("paper") == {}
    assert affinity_run_steps("paper", 700) == {"train.steps": 700}
    cpu = config.load("cpu", affinity_run_steps("cpu"))
    assert cpu.train.steps == CPU_STEPS != config.load("cpu").train.steps
    with pytest.raises(ValueError, match="steps must be >= 0"):
        affinity_run_steps("cpu", -1)
