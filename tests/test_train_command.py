"""The training command trains one run into the cache that notebooks read."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mtl_diffusion import paths
from mtl_diffusion.config import load
from mtl_diffusion.paths import ROOT
from mtl_diffusion.runs import train_run
from mtl_diffusion.train import Trainer

SETTINGS = ["train.steps=4", "train.batch_size=8", "train.eval_every=0", "model.base_channels=8"]


def command(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtl_diffusion.train", *args],
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_run_trained_by_the_command_is_loaded_by_train_run(tmp_path, monkeypatch) -> None:
    sets = [item for s in SETTINGS for item in ("--set", s)]
    done = command("--profile", "smoke", "--name", "cli", "--no-eval", "--seed", "2", *sets,
                   env={"MTL_DIFFUSION_ARTIFACTS": str(tmp_path)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "trained 4 steps" in done.stdout and "result: " in done.stdout
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path)
    monkeypatch.setattr(Trainer, "fit", lambda self, steps=None: pytest.fail("trained again"))
    overrides = dict(s.split("=") for s in SETTINGS)
    cfg = load("smoke", {k: int(v) for k, v in overrides.items()}, seed=2)
    assert len(train_run(cfg, "cli", evaluate=False).history.losses) == 4


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--set", "train.stepz=3"], {}, "unknown config key 'train.stepz'"),
        (["--set", "train.lr=0"], {}, "train.lr=0.0 is out of range"),
        (["--snapshots", "5,3"], {}, "--snapshots takes strictly increasing step counts"),
        (["--snapshots", "a"], {}, "--snapshots takes strictly increasing step counts"),
        (["--plan", "00", "-p", "seed"], {}, "-p takes NAME=VALUE"),
    ],
)
def test_the_command_refuses_bad_input_before_training(args, env, message: str) -> None:
    done = command("--profile", "smoke", *args, env=env)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
