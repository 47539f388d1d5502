"""Runs as jobs: the command a plan prints trains exactly the cache entry the notebook reads;
under the plan policy missing runs are listed, never trained in the kernel."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys

import pytest
import torch

from mtl_diffusion import paths
from mtl_diffusion.affinity import precompute_affinity, training_snapshots
from mtl_diffusion.config import load
from mtl_diffusion.paths import ROOT
from mtl_diffusion.plan import RunsNeeded, command, policy
from mtl_diffusion.runs import train_many, train_run
from mtl_diffusion.train import Trainer
from mtl_diffusion.train.__main__ import config_from_args

SMALL = {"train.steps": 3, "train.batch_size": 8, "train.eval_every": 0}


def read_back(line: str):
    """The Config the training command builds from a plan's line."""
    args = shlex.split(line)
    assert args[:3] == ["python", "-m", "mtl_diffusion.train"]
    value = {a: args[i + 1] for i, a in enumerate(args) if a in ("--profile", "--seed")}
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    seed = int(value["--seed"]) if "--seed" in value else None
    return config_from_args(value["--profile"], sets, seed)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"data.path": "/data/my ffhq", "train.lr": 3e-4, "seed": 7},
        {"model.channel_mults": (1, 2), "mtl.self_check": False, "mtl.method": "pcgrad",
         "timesteps.sampler": "stratified", "eval.feature_net": "/m/inc 1.pt2"},
        {"data.path": "1234", "eval.feature_net": "(1, 2)", "data.name": "folder"},  # look like
        # literals
    ],
)  # fmt: skip
def test_a_planned_command_builds_the_same_config(overrides: dict) -> None:
    cfg = load("paper", overrides)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ema_decay=0.9999 / 1.1))
    line = command(cfg, "run")
    assert read_back(line).to_dict() == cfg.to_dict()
    assert "'pcgrad'" not in line  # plain strings stay plain


def test_the_paper_profile_plans_and_others_train(monkeypatch) -> None:
    assert policy(load("paper")) == "plan" and policy(load("cpu")) == "in-process"
    monkeypatch.setenv("MTL_DIFFUSION_TRAIN", "plan")
    assert policy(load("smoke")) == "plan"
    monkeypatch.setenv("MTL_DIFFUSION_TRAIN", "later")
    with pytest.raises(ValueError, match="MTL_DIFFUSION_TRAIN must be one of"):
        policy(load("smoke"))


def test_missing_runs_are_listed_then_loaded_once_their_commands_ran(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path)
    monkeypatch.setenv("MTL_DIFFUSION_TRAIN", "plan")
    monkeypatch.setenv("MTL_DIFFUSION_PLAN", str(tmp_path / "plan.txt"))
    configs = [load("smoke", SMALL, seed=s) for s in (0, 1)]
    train_run(configs[0], "jobs", evaluate=False, train=True)  # already in the cache
    with pytest.raises(RunsNeeded) as raised:
        train_many(configs, "jobs", evaluate=False, jobs=1)
    assert raised.value.commands == [command(configs[1], "jobs", evaluate=False)]
    assert (tmp_path / "plan.txt").read_text().splitlines() == raised.value.commands
    with pytest.raises(RunsNeeded):
        train_run(configs[1], "jobs", evaluate=False)
    job = shlex.split(raised.value.commands[0])
    env = {**os.environ, "MTL_DIFFUSION_ARTIFACTS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *job[1:]], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    monkeypatch.setattr(Trainer, "fit", lambda self, steps=None: pytest.fail("trained again"))
    runs = train_many(configs, "jobs", evaluate=False, jobs=1)
    assert [r.config.seed for r in runs] == [0, 1]


def test_plan_prints_the_commands_of_a_notebook_without_training(tmp_path) -> None:
    env = {**os.environ, "MTL_DIFFUSION_ARTIFACTS": str(tmp_path / "a"),
           "MTL_DIFFUSION_BUILD": str(tmp_path / "b"), "MTL_DIFFUSION_TRAIN": "plan",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "mtl_diffusion.train", "--plan", "00", "--profile", "smoke",
         "--set", "train.steps=4", "-p", "seed=2"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    assert len(lines) == 1 and "--name quickstart" in lines[0], done.stdout
    cfg = read_back(lines[0])
    assert (cfg.profile, cfg.seed, cfg.train.steps) == ("smoke", 2, 4)
    assert not (tmp_path / "a" / "smoke" / "cache").exists()  # nothing trained


def test_a_snapshot_run_is_planned_then_loaded_with_the_weights_of_training_here(
    tmp_path, monkeypatch
) -> None:
    cfg = load("smoke", SMALL)
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path / "job")
    monkeypatch.setenv("MTL_DIFFUSION_TRAIN", "plan")
    with pytest.raises(RunsNeeded) as raised:
        precompute_affinity([cfg, load("smoke", SMALL, seed=1)])  # both runs listed at once
    assert len(raised.value.commands) == 2 and "--snapshots" in raised.value.commands[0]
    with pytest.raises(RunsNeeded) as raised:
        training_snapshots(cfg, (0, 2, 3), "snaps")
    (line,) = raised.value.commands
    env = {**os.environ, "MTL_DIFFUSION_ARTIFACTS": str(tmp_path / "job"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *shlex.split(line)[1:]], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    monkeypatch.setattr(Trainer, "fit", lambda self, steps=None: pytest.fail("trained again"))
    job = training_snapshots(cfg, (0, 2, 3), "snaps")
    monkeypatch.undo()
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path / "here")
    here = training_snapshots(cfg, (0, 2, 3), "snaps", train=True)
    assert job.steps == here.steps == (0, 2, 3)
    for a, b in zip(job.states, here.states, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
