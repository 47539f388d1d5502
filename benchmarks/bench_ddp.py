"""DistributedDataParallel step time and communication of vanilla and PCGrad, in one run.

    python benchmarks/bench_ddp.py [--k 5] [--per-rank 64] [--steps 15]

Two CPU processes (torchrun, gloo backend, one thread each) train the cpu-profile U-Net with
the project's Trainer on a global batch of 2 x per-rank samples, k stratified timestep clusters;
the baseline is the same Trainer in ONE process on a batch of per-rank samples (the work of one
rank without communication), timed in this process before the two ranks start. Step times are
medians over `--steps` steps after two warm-up steps (the fast path's self-check runs in the
first). Bytes are the all-reduce payload per rank and step: DistributedDataParallel's gradient
buckets (counted by a communication hook) plus the engine's own averages (cluster losses;
PCGrad: the k per-cluster gradients, in 25 MiB buckets).
Goal: PCGrad's communication is k gradient all-reduces (k x vanilla's bytes), no more.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from mtl_diffusion.config import load
from mtl_diffusion.train import Trainer

METHODS = ("vanilla", "pcgrad")


def settings(method: str, batch: int, k: int) -> dict:
    return {
        "train.batch_size": batch,
        "train.eval_every": 0,
        "timesteps.sampler": "stratified",
        "mtl.num_clusters": k,
        "mtl.method": method,
    }


def step_times(trainer: Trainer, steps: int) -> list[float]:
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        trainer.train_step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return times


def counting_hook(counter: list[int]):
    """DDP's own all-reduce hook, counting the bytes of every bucket."""

    def hook(state, bucket):
        buffer = bucket.buffer()
        counter[0] += buffer.numel() * buffer.element_size()
        return default_hooks.allreduce_hook(state, bucket)

    return hook


def worker(out: Path, per_rank: int, k: int, steps: int) -> None:
    dist.init_process_group("gloo")
    world = dist.get_world_size()
    rows = {}
    for method in METHODS:
        trainer = Trainer(load("cpu", settings(method, world * per_rank, k)))
        ddp_bytes = [0]
        if method == "vanilla":  # the engine's model is the DistributedDataParallel wrapper
            trainer.engine.model.register_comm_hook(None, counting_hook(ddp_bytes))
        times = step_times(trainer, steps)
        total = steps + 2
        sent = (ddp_bytes[0] + trainer.engine.sync.bytes_sent) / total
        rows[method] = {"seconds": statistics.median(times), "bytes": sent}
    if dist.get_rank() == 0:
        params = sum(p.numel() for p in trainer.model.parameters())
        torch.save({"rows": rows, "params": params, "world": world}, out)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--per-rank", type=int, default=64)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.per_rank, args.k, args.steps)
    torch.set_num_threads(1)
    single = {}
    for method in METHODS:
        trainer = Trainer(load("cpu", settings(method, args.per_rank, args.k)))
        single[method] = statistics.median(step_times(trainer, args.steps))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "ddp.pt"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", "2", __file__, "--worker", str(out),
                   "--per-rank", str(args.per_rank), "--k", str(args.k),
                   "--steps", str(args.steps)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MTL_DIFFUSION_QUIET": "1"}
        subprocess.run(command, env=env, check=True)
        measured = torch.load(out, weights_only=False)
    rows, params = measured["rows"], measured["params"]
    grad_bytes = params * 4
    print(f"cpu U-Net, {params} parameters ({grad_bytes / 2**20:.2f} MiB of float32 gradient); "
          f"k={args.k}; {measured['world']} gloo processes x {args.per_rank} samples; "
          f"median of {args.steps} steps")  # fmt: skip
    print(f"{'method':8} {'1 process':>10} {'DDP step':>10} {'ratio':>6} {'bytes/step':>12} "
          f"{'gradients':>10}")  # fmt: skip
    for method in METHODS:
        row = rows[method]
        ratio = row["seconds"] / single[method]
        print(f"{method:8} {single[method] * 1e3:8.1f}ms {row['seconds'] * 1e3:8.1f}ms "
              f"{ratio:5.2f}x {row['bytes']:12.0f} {row['bytes'] / grad_bytes:9.2f}x")  # fmt: skip
    print("goal: PCGrad sends k gradients a step "
          f"({args.k * grad_bytes} bytes + {args.k * 4} of losses); "
          f"measured {rows['pcgrad']['bytes']:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
