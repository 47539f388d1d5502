"""The training loop: exact resume, determinism, non-finite loss handling, EMA, learning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl_diffusion.config import load
from mtl_diffusion.ema import make_ema, update_ema
from mtl_diffusion.train import CHECKPOINT, NonFiniteLossError, Trainer

TINY = {"train.steps": 6, "train.batch_size": 16, "train.checkpoint_every": 3, "train.eval_every": 0}


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
        {"data.name": "toy:8gaussians", "model.arch": "mlp", "train.steps": 300,
         "train.batch_size": 128, "train.eval_every": 0, "train.checkpoint_every": 0},
    )
    losses = Trainer(cfg).fit().losses
    first, last = sum(losses[:30]) / 30, sum(losses[-30:]) / 30
    assert last < 0.8 * first
