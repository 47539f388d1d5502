"""Data-parallel training under torchrun (2 CPU processes, gloo): every MTL method takes the
single-process update of the same global batch, ranks stay identical, a killed job resumes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from distributed_worker import STEPS, config
from torch.nn.parallel import DistributedDataParallel

from mtl_diffusion import paths
from mtl_diffusion.config import load
from mtl_diffusion.mtl import MTLEngine
from mtl_diffusion.mtl.distributed import RankAverage, Ranks, shard
from mtl_diffusion.paths import ROOT
from mtl_diffusion.runs import train_run
from mtl_diffusion.train import Trainer

METHODS = ["vanilla", "uw", "famo", "dwa", "pcgrad", "nash", "cagrad", "imtlg", "mgda"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [*TORCHRUN, *args],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MTL_DIFFUSION_QUIET": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def finish(job: subprocess.Popen) -> str:
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output[-3000:]
    return output


def kill_job(job: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers (which it starts in sessions of their own), as a
    scheduler's preemption would."""
    workers = children(job.pid)
    for pid in [job.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    job.wait()
    for pid in workers:  # gone before the test goes on
        while Path(f"/proc/{pid}").exists() and "Z" not in state(pid):
            time.sleep(0.01)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ddp") / "results.pt"
    worker = str(Path(__file__).parent / "distributed_worker.py")
    finish(torchrun(worker, str(out), *METHODS, "pcgrad@bf16"))
    return torch.load(out, weights_only=False)


def test_bucketed_average_equals_the_mean(two_ranks: dict) -> None:
    assert two_ranks["bucket_error"] == 0.0


@pytest.mark.parametrize("name", [*METHODS, "pcgrad@bf16"])
def test_two_ranks_take_the_single_process_update_of_the_global_batch(
    two_ranks: dict, name: str
) -> None:
    method, _, precision = name.partition("@")
    result = two_ranks[name]
    assert result["param_spread"] == 0.0 and result["state_spread"] == 0.0  # ranks identical
    single = Trainer(config(method, precision or "fp32"))
    start = flat(single.model.state_dict())
    single.fit()
    end, ddp = flat(single.model.state_dict()), flat(result["model"])
    # relative to how far training moved the weights: float32 sums in another order give
    # ~1e-5; bf16 rounds each rank's half-batch matmuls differently (~1e-2); a missed average
    # or a local Gramian gives ~1
    error = float((ddp - end).norm() / (end - start).norm())
    assert error < (0.05 if precision == "bf16" else 1e-3), error
    torch.testing.assert_close(result["losses"], single.history.losses, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        result["weights"], single.history.method_weights, atol=1e-4, rtol=1e-3
    )


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.reshape(-1).double() for v in state.values()])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (nccl)")
@pytest.mark.parametrize("name", ["vanilla", "uw", "pcgrad", "nash", "pcgrad@bf16"])
def test_two_gpus_take_the_single_gpu_update_of_the_global_batch(tmp_path, name: str) -> None:
    out = tmp_path / "results.pt"
    worker = str(Path(__file__).parent / "distributed_worker.py")
    finish(torchrun(worker, str(out), name, "--device", "cuda"))
    result = torch.load(out, weights_only=False)[name]
    method, _, precision = name.partition("@")
    assert result["param_spread"] == 0.0 and result["state_spread"] == 0.0
    single = Trainer(config(method, precision or "fp32", "cuda"))
    start = flat(single.model.state_dict())
    single.fit()
    end, ddp = flat(single.model.state_dict()).cpu(), flat(result["model"])
    error = float((ddp - end).norm() / (end - start.cpu()).norm())
    assert error < (0.05 if precision == "bf16" else 1e-3), error


def test_gradient_methods_send_k_gradients_and_k_losses_a_step(two_ranks: dict) -> None:
    cfg = config("pcgrad")
    size = sum(p.numel() for p in Trainer(cfg).model.parameters())
    k = 5  # the smoke profile's stratified sampler
    assert two_ranks["pcgrad"]["bytes_sent"] == STEPS * (k * size + k) * 4


def test_the_shard_of_each_rank_holds_every_cluster_or_the_batch_is_refused() -> None:
    rows = [shard(20, 5, Ranks(r, 2)) for r in range(2)]
    assert rows == [slice(0, 10), slice(10, 20)]
    ids = torch.arange(20) % 5  # the stratified samplers' layout
    assert all(set(ids[r].tolist()) == set(range(5)) for r in rows)
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        shard(21, 5, Ranks(0, 2))
    with pytest.raises(ValueError, match="train.batch_size >= 10"):
        shard(8, 5, Ranks(0, 2))


def test_a_killed_torchrun_job_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch) -> None:
    steps, every = 100, 10
    sets = [f"train.steps={steps}", f"train.checkpoint_every={every}", "train.eval_every=0",
            "train.batch_size=20", "timesteps.sampler=stratified", "mtl.method=pcgrad"]  # fmt: skip
    args = ["-m", "mtl_diffusion.train", "--profile", "smoke", "--name", "ddp", "--no-eval"]
    args += [item for s in sets for item in ("--set", s)]
    env = {"MTL_DIFFUSION_ARTIFACTS": str(tmp_path / "job")}
    job = torchrun(*args, env=env)
    runs = tmp_path / "job" / "smoke" / "runs"
    deadline = time.monotonic() + 240
    while not list(runs.glob("ddp-*/checkpoint.pt")):
        assert job.poll() is None and time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.05)
    kill_job(job)
    checkpoint = torch.load(next(runs.glob("ddp-*/checkpoint.pt")), weights_only=False)
    assert checkpoint["step"] < steps  # killed part-way
    # another engineer's edit to the package between the two jobs would make it refuse
    output = finish(torchrun(*args, env={**env, "MTL_DIFFUSION_ON_CODE_CHANGE": "resume"}))
    assert f"trained {steps} steps" in output

    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path / "job")
    overrides = dict(s.split("=") for s in sets)
    cfg = load("smoke", {k: v if k.startswith(("timesteps", "mtl")) else int(v)
                         for k, v in overrides.items()})  # fmt: skip
    resumed = train_run(cfg, "ddp", evaluate=False)  # loads the job's result
    assert len(resumed.history.losses) == steps
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path / "single")
    single = train_run(cfg, "ddp", evaluate=False)  # one process, never interrupted
    for key, value in single.model_state.items():
        torch.testing.assert_close(resumed.model_state[key], value, atol=1e-3, rtol=0, msg=key)
    torch.testing.assert_close(resumed.history.losses, single.history.losses, atol=1e-4, rtol=1e-3)


def test_the_engine_refuses_a_ddp_model_it_would_average_wrongly(tmp_path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        wrapped = DistributedDataParallel(Trainer(config("vanilla")).model)
        with pytest.raises(ValueError, match="pass the plain module"):
            MTLEngine(wrapped, "pcgrad", 5, sync=RankAverage())
        with pytest.raises(ValueError, match="needs sync=RankAverage"):
            MTLEngine(wrapped, "uw", 5)
        MTLEngine(wrapped, "vanilla", 5)  # DDP's own average is all vanilla needs
        MTLEngine(wrapped, "uw", 5, sync=RankAverage())
    finally:
        dist.destroy_process_group()
