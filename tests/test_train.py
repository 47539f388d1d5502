"""The training loop: exact resume, determinism, non-finite loss handling, EMA, learning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_diffusion.builders import schedule_from_config
from mtl_diffusion.config import load
from mtl_diffusion.ema import make_ema, update_ema
from mtl_diffusion.train import CHECKPOINT, NonFiniteLossError, Trainer, timestep_loss_weights

TINY = {
    "train.steps": 6,
    "train.batch_size": 16,
    "train.checkpoint_every": 3,
    "train.eval_every": 0,
}


def tiny(**overrides: object):
    return load("smoke", {**TINY, **overrides})


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("arch", ["unet", "dit"])
def test_resume_equals_uninterrupted_run(tmp_path: Path, arch: str) -> None:
    cfg = tiny(**{"model.arch": arch, "model.dropout": 0.1})
    straight = Trainer(cfg, run_dir=tmp_path / "a")
    straight.fit()

    interrupted = Trainer(cfg, run_dir=tmp_path / "b")
    interrupted.fit(steps=3)  # "crash" after the step-3 checkpoint
    resumed = Trainer(cfg, run_dir=tmp_path / "b")
    assert resumed.step == 3
    resumed.fit()

    assert states_equal(straight.model, resumed.model)
    assert states_equal(straight.ema, resumed.ema)
    assert straight.history.losses == resumed.history.losses


@pytest.mark.parametrize("method", ["uw", "famo", "nash", "pcgrad", "dwa"])
def test_resume_with_mtl_method_state_equals_uninterrupted_run(tmp_path: Path, method: str) -> None:
    # k = 5 clusters over a batch of 16 (chunks 4, 3, 3, 3, 3); Nash re-solves at steps 1, 3, 5
    cfg = tiny(**{"timesteps.sampler": "stratified", "mtl.method": method, "mtl.nash_every": 2})
    straight = Trainer(cfg, run_dir=tmp_path / "a")
    straight.fit()

    interrupted = Trainer(cfg, run_dir=tmp_path / "b")
    interrupted.fit(steps=3)
    resumed = Trainer(cfg, run_dir=tmp_path / "b")
    assert resumed.step == 3
    resumed.fit()

    assert states_equal(straight.model, resumed.model)
    assert states_equal(straight.ema, resumed.ema)
    assert straight.history.losses == resumed.history.losses
    assert straight.history.method_weights == resumed.history.method_weights
    assert len(straight.history.method_weights) == 6
    assert all(len(w) == 5 for w in straight.history.method_weights)
    a, b = straight.engine.state_dict(), resumed.engine.state_dict()
    if "method" in a:  # UW's s, FAMO's xi and its inner Adam state
        assert str(a["method"]) == str(b["method"])


@pytest.mark.parametrize(
    ("name", "formula"),
    [
        ("constant", lambda snr: torch.ones_like(snr)),
        ("min_snr", lambda snr: torch.minimum(snr, torch.full_like(snr, 5.0)) / snr),
        ("p2", lambda snr: 1.0 / (1.0 + snr)),
    ],
)
def test_loss_weights_per_timestep(name: str, formula) -> None:
    cfg = tiny(**{"diffusion.loss_weight": name})
    schedule = schedule_from_config(cfg)
    ab = schedule.alphas_cumprod
    expected = formula(ab / (1 - ab)).float()
    torch.testing.assert_close(timestep_loss_weights(cfg, schedule), expected)
    torch.testing.assert_close(Trainer(cfg).loss_weights, expected)


def test_p2_needs_eps_prediction() -> None:
    cfg = tiny(**{"diffusion.loss_weight": "p2", "diffusion.prediction": "x0"})
    with pytest.raises(ValueError, match="p2"):
        Trainer(cfg)


def test_history_records_cluster_losses_that_sum_to_the_loss() -> None:
    history = Trainer(tiny(**{"timesteps.sampler": "stratified"})).fit()
    assert len(history.cluster_losses) == len(history.losses) == 6
    for parts, loss in zip(history.cluster_losses, history.losses, strict=True):
        assert sum(parts) == pytest.approx(loss, rel=1e-5)
    assert all(w == [1.0] * 5 for w in history.method_weights)  # vanilla


def test_same_seed_same_numbers_other_seed_differs() -> None:
    a, b, c = Trainer(tiny()), Trainer(tiny()), Trainer(tiny(seed=1))
    la, lb, lc = a.fit().losses, b.fit().losses, c.fit().losses
    assert la == lb
    assert la != lc


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = Trainer(tiny(), run_dir=tmp_path)
    trainer.fit(steps=3)
    good = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    trainer.data = torch.full_like(trainer.data, float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"step 4.*step 3\)"):
        trainer.fit()
    kept = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert kept["step"] == 3
    assert all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])


def test_checkpoint_from_another_config_is_refused(tmp_path: Path) -> None:
    Trainer(tiny(), run_dir=tmp_path).fit(steps=3)
    with pytest.raises(ValueError, match="different config"):
        Trainer(tiny(seed=5), run_dir=tmp_path)


def test_ema_matches_its_formula() -> None:
    model = torch.nn.Linear(3, 2)
    ema = make_ema(model)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    update_ema(ema, model, decay=0.9)
    for name, param in model.state_dict().items():
        expected = 0.9 * before[name] + 0.1 * param
        assert torch.allclose(ema.state_dict()[name], expected)


def test_loss_falls_on_a_toy() -> None:
    cfg = load(
        "smoke",
        {
            "data.name": "toy:8gaussians",
            "model.arch": "mlp",
            "train.steps": 300,
            "train.batch_size": 128,
            "train.eval_every": 0,
            "train.checkpoint_every": 0,
        },
    )
    losses = Trainer(cfg).fit().losses
    first, last = sum(losses[:30]) / 30, sum(losses[-30:]) / 30
    assert last < 0.8 * first


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="train.device='cuda'.*train.device='cpu'"):
        Trainer(tiny(**{"train.device": "cuda"}))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["vanilla", "uw", "pcgrad"])
def test_cuda_draws_the_same_batches_and_trains_like_cpu(method: str) -> None:
    clustered = {"timesteps.sampler": "stratified", "mtl.num_clusters": 4, "mtl.method": method}
    overrides = clustered if method != "vanilla" else {}
    cpu, gpu = Trainer(tiny(**overrides)), Trainer(tiny(**overrides, **{"train.device": "cuda"}))
    for a, b in zip(cpu.sample_batch(), gpu.sample_batch(), strict=True):
        assert b.is_cuda and torch.equal(a, b.cpu())
    losses = cpu.fit().losses, gpu.fit().losses
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_warm_up_follows_the_documented_decay(warmup: bool) -> None:
    """After the first step the EMA holds decay_0 * init + (1 - decay_0) * model, with
    decay_0 = min(0.995, (1 + 0) / (10 + 0)) = 0.1 under warm-up, else 0.995."""
    trainer = Trainer(tiny(**{"train.ema_warmup": warmup}))
    init = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_step()
    decay = 0.1 if warmup else 0.995
    for name, value in trainer.model.state_dict().items():
        expected = decay * init[name] + (1 - decay) * value
        torch.testing.assert_close(trainer.ema.state_dict()[name], expected)


def test_an_inf_gradient_with_a_finite_loss_stops_before_the_update(tmp_path: Path) -> None:
    trainer = Trainer(tiny(), run_dir=tmp_path)
    trainer.fit(steps=3)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    layer = trainer.model.out_conv
    handle = layer.register_full_backward_hook(lambda m, gi, go: (gi[0] * float("inf"),))
    with pytest.raises(NonFiniteLossError, match=r"gradient norm is (inf|nan).*step 4"):
        trainer.train_step()
    handle.remove()
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())


def test_the_self_check_switch_reaches_the_engine() -> None:
    clustered = {"timesteps.sampler": "stratified", "mtl.method": "pcgrad"}
    assert Trainer(tiny(**clustered)).engine.self_check
    assert not Trainer(tiny(**clustered, **{"mtl.self_check": False})).engine.self_check


@pytest.mark.parametrize("method", ["vanilla", "pcgrad"])
def test_bf16_autocast_trains_like_fp32(tmp_path: Path, method: str) -> None:
    """Under train.precision='bf16' the forward runs in bf16 (CPU autocast) while weights,
    gradients and the optimizer stay float32; the losses follow the fp32 run's within bf16
    rounding, and a resumed bf16 run equals an uninterrupted one."""
    clustered = {"timesteps.sampler": "stratified", "mtl.method": method}
    overrides = clustered if method != "vanilla" else {}
    fp32 = Trainer(tiny(**overrides)).fit().losses
    bf16 = Trainer(tiny(**overrides, **{"train.precision": "bf16"}))
    losses = bf16.fit().losses
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert losses == pytest.approx(fp32, rel=0.05)
    assert losses != fp32  # bf16 really ran
    cfg = tiny(**overrides, **{"train.precision": "bf16"})
    Trainer(cfg, run_dir=tmp_path).fit(steps=3)
    resumed = Trainer(cfg, run_dir=tmp_path)
    resumed.fit()
    assert states_equal(resumed.model, bf16.model)


def test_fp16_needs_cuda() -> None:
    from mtl_diffusion.config import ConfigError

    with pytest.raises(ConfigError, match="train.precision='fp16' needs train.device='cuda'"):
        tiny(**{"train.precision": "fp16"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["uw", "pcgrad"])
def test_fp16_with_a_grad_scaler_on_cuda(method: str) -> None:
    clustered = {"timesteps.sampler": "stratified", "mtl.method": method}
    trainer = Trainer(tiny(**clustered, **{"train.device": "cuda", "train.precision": "fp16"}))
    losses = trainer.fit().losses
    assert np.isfinite(losses).all() and trainer.scaler.is_enabled()
