"""Cached runs: parallel workers give the same weights as training in this process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl_diffusion import paths
from mtl_diffusion.builders import timesteps_from_config
from mtl_diffusion.config import load
from mtl_diffusion.runs import generate, initial_noise, train_many, train_run
from mtl_diffusion.train import Trainer
from mtl_diffusion.workers import worker_pool

TINY = {"train.steps": 4, "train.batch_size": 8, "train.eval_every": 0, "model.base_channels": 8}


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path)
    monkeypatch.setenv("MTL_DIFFUSION_ARTIFACTS", str(tmp_path))  # seen by worker processes
    return tmp_path


def test_parallel_runs_match_in_process_training(artifacts: Path) -> None:
    configs = [load("smoke", TINY, seed=s) for s in (0, 1)]
    results = train_many(configs, "parallel", evaluate=False, jobs=2)
    assert len(list((artifacts / "smoke" / "cache").glob("parallel-*.pt"))) == 2
    with worker_pool(1) as pool:  # one thread, as the workers: the same float summation order
        alone = [pool.submit(_ema_state, cfg).result() for cfg in configs]
    for cfg, result, expected in zip(configs, results, alone, strict=True):
        assert result.config == cfg
        for name, value in expected.items():
            assert torch.allclose(result.ema_state[name], value, atol=1e-6), name


def _ema_state(cfg) -> dict[str, torch.Tensor]:
    trainer = Trainer(cfg)
    trainer.fit()
    return trainer.ema.state_dict()


def test_train_run_loads_from_cache(artifacts: Path) -> None:
    cfg = load("smoke", TINY)
    first = train_run(cfg, "cached", evaluate=False)
    second = train_run(cfg, "cached", evaluate=False)
    assert first.history.losses == second.history.losses
    assert not (artifacts / "smoke" / "runs").exists() or not any(
        (artifacts / "smoke" / "runs").iterdir()
    ), "the checkpoint folder is removed once the result is cached"


def test_generate_uses_common_random_numbers() -> None:
    cfg = load("smoke", TINY)
    assert torch.equal(initial_noise(cfg, 5), initial_noise(cfg, 5))
    model = Trainer(cfg).ema
    a, b = generate(model, cfg, 5), generate(model, cfg, 5)
    assert torch.equal(a, b)
    assert a.shape == (5, 1, 8, 8)


def test_sampling_in_batches_gives_the_samples_of_one_batch() -> None:
    cfg = load("smoke", TINY)
    model = Trainer(cfg).ema
    whole = generate(model, cfg, 7)
    batched = load("smoke", {**TINY, "eval.sample_batch": 3})  # batches of 3, 3 and 1
    torch.testing.assert_close(generate(model, batched, 7), whole, atol=1e-5, rtol=0)  # DDIM eta 0
    ddpm = {**TINY, "eval.sampler": "ddpm", "diffusion.num_timesteps": 30}
    stochastic = generate(model, load("smoke", {**ddpm, "eval.sample_batch": 3}), 7)
    assert torch.equal(
        stochastic, generate(model, load("smoke", {**ddpm, "eval.sample_batch": 3}), 7)
    )
    assert stochastic.shape == whole.shape and torch.isfinite(stochastic).all()
    assert not torch.equal(stochastic[:3], stochastic[3:6])  # each batch has noise of its own


def test_interval_restricted_timesteps() -> None:
    cfg = load("smoke", {"timesteps.t_start": 200, "timesteps.t_end": 399})
    t = timesteps_from_config(cfg).sample(20_000, torch.Generator().manual_seed(0))
    assert t.min().item() == 200 and t.max().item() == 399
    counts = torch.bincount(t - 200, minlength=200).float()
    assert counts.std() / counts.mean() < 0.25  # uniform over the interval (about 0.1 expected)
