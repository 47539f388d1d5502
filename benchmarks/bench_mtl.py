"""Training-step time of each MTL method on timestep clusters, as a ratio to vanilla, in one run.

    python benchmarks/bench_mtl.py [--profile cpu] [--k 5] [--rounds 15]

One full Trainer step (batch, forward, gradients, method, clipping, AdamW, EMA) of the profile's
U-Net for vanilla (uniform timesteps, one backward), the loss-based methods (uw, famo) and the
gradient methods (pcgrad, nash re-solved every step, cagrad, imtlg) on each per-cluster gradient
path (fast, vmap, reference). Trainers are stepped in interleaved rounds, one step each per
round, so load changes on a shared machine hit every method alike; the table shows medians of
the process CPU time per step (one thread: what the step costs, whatever else the machine runs)
and of the wall time.
Goal: every gradient method <= 1.15x vanilla on the fast path, uw <= 1.02x.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtl_diffusion import config
from mtl_diffusion.train import Trainer

LOSS_METHODS = ("uw", "famo")
GRADIENT_METHODS = ("pcgrad", "nash", "cagrad", "imtlg")
PATHS = ("fast", "vmap", "reference")


def trainers(profile: str, k: int, paths: tuple[str, ...]) -> dict[str, Trainer]:
    """One trainer per (method, path), vanilla first."""
    cases: dict[str, dict[str, object]] = {"vanilla": {}}
    clustered = {"timesteps.sampler": "stratified", "mtl.num_clusters": k, "mtl.nash_every": 1}
    for method in LOSS_METHODS:
        cases[method] = {**clustered, "mtl.method": method}
    for method in GRADIENT_METHODS:
        for path in paths:
            cases[f"{method} ({path})"] = {
                **clustered,
                "mtl.method": method,
                "mtl.gradient_path": path,
            }
    return {name: Trainer(config.load(profile, overrides)) for name, overrides in cases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    args = parser.parse_args()
    runs = trainers(args.profile, args.k, tuple(args.paths))
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    for trainer in runs.values():  # warm-up
        trainer.train_step()
    for _ in range(args.rounds):
        for name, trainer in runs.items():
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            trainer.train_step()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    cfg = runs["vanilla"].config
    params = sum(p.numel() for p in runs["vanilla"].model.parameters())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); profile {args.profile}: "
        f"{cfg.model.arch} ({params:,d} parameters), batch {cfg.train.batch_size}, k = {args.k}, "
        f"{args.rounds} interleaved rounds"
    )
    base_cpu, base_wall = statistics.median(cpu["vanilla"]), statistics.median(wall["vanilla"])
    print(
        f"{'method (gradient path)':24} {'CPU ms':>7} {'CPU x vanilla':>14} {'wall x vanilla':>15}"
    )
    for name in runs:
        median = statistics.median(cpu[name])
        q1, _, q3 = (q / base_cpu for q in statistics.quantiles(cpu[name], n=4))
        ratio = f"{median / base_cpu:.2f} [{q1:.2f}, {q3:.2f}]"
        wall_ratio = statistics.median(wall[name]) / base_wall
        print(f"{name:24} {1e3 * median:7.1f} {ratio:>18} {wall_ratio:11.2f}")
    print(
        "CPU: process time of the step (one thread), robust to other processes on the machine; "
        "[ ]: interquartile range of single steps / vanilla's median; wall: median wall time"
    )


if __name__ == "__main__":
    main()
