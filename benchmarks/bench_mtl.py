"""Training-step time of each MTL method on timestep clusters, as a ratio to vanilla, in one run.

    python benchmarks/bench_mtl.py [--k 5] [--batch 128] [--rounds 15]

Two models of about 650k parameters on 8x8 single-channel images: the project's cpu-profile
U-Net and a diffusers UNet2DModel (a model we did not write; random init, no downloads). One
step is what a user's loop does: engine.objective(batch), its backward, gradient clipping and
AdamW, with k interleaved timestep clusters (B = 128, k = 5: 3 clusters get one extra sample).
Steps are taken in interleaved rounds, one step of every case per round, so load changes hit
every case alike; the table shows medians of the process CPU time per step (one thread).

Pieces of the fast path, each as a ratio to vanilla's step: "capture k=1" is the per-layer
capture of ONE cluster's gradient (hooks, no split: the cost of the hook design itself);
"capture" is cluster_gradients at k; the rest of a method's step is the Gramian, the weights,
the update and its surrogate backward. The first-batch self-check (fast vs reference, once per
run) is reported as a one-time cost in vanilla steps.
Goal: every gradient method <= 1.15x vanilla on the fast path, on both models.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from mtl_diffusion import config
from mtl_diffusion.builders import model_from_config
from mtl_diffusion.mtl import DenoisingBatch, MTLEngine, cluster_gradients, interleaved_clusters

GRADIENT_METHODS = ("pcgrad", "nash", "cagrad", "imtlg", "mgda")


def project_unet() -> tuple[nn.Module, Callable]:
    return model_from_config(config.load("cpu")), lambda model, x_t, t: model(x_t, t)


def diffusers_unet() -> tuple[nn.Module, Callable]:
    from diffusers import UNet2DModel  # a test/benchmark-only dependency

    model = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
    )
    return model, lambda model, x_t, t: model(x_t, t).sample


def make_batch(size: int, k: int, seed: int) -> DenoisingBatch:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 1, 8, 8, generator=gen)
    t = torch.randint(0, 1000, (size,), generator=gen)
    target = torch.randn(x.shape, generator=gen)
    return DenoisingBatch(x, t, target, torch.ones(size), k, interleaved_clusters(size, k))


class Case:
    """One (model, method) loop: engine objective, backward, clipping, AdamW."""

    def __init__(self, build: Callable, method: str, k: int, self_check: bool = False) -> None:
        torch.manual_seed(0)
        self.model, self.forward = build()
        self.engine = MTLEngine(
            self.model, method, k, forward=self.forward, nash_every=1, self_check=self_check
        )
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.engine.attach(self.optimizer)

    def step(self, batch: DenoisingBatch) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.engine.objective(batch).objective.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()


def cpu_time(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def bench_model(name: str, build: Callable, k: int, size: int, rounds: int) -> None:
    batches = [make_batch(size, k, seed) for seed in range(4)]
    single = [make_batch(size, 1, seed) for seed in range(4)]
    cases = {"vanilla": Case(build, "vanilla", 1), "uw": Case(build, "uw", k)}
    cases.update({m: Case(build, m, k) for m in GRADIENT_METHODS})
    capture = Case(build, "vanilla", 1)  # a model to time cluster_gradients on

    def fast(b: DenoisingBatch) -> object:
        return cluster_gradients(capture.model, b, "fast", forward=capture.forward, audit=False)

    pieces = {"capture k=1": lambda b, s: fast(s), f"capture k={k}": lambda b, s: fast(b)}
    times: dict[str, list[float]] = {n: [] for n in [*cases, *pieces]}
    for r in range(rounds + 1):
        b, s = batches[r % 4], single[r % 4]
        for n, case in cases.items():
            data = s if n == "vanilla" else b
            spent = cpu_time(lambda case=case, data=data: case.step(data))
            if r:  # round 0 warms up
                times[n].append(spent)
        for n, piece in pieces.items():
            spent = cpu_time(lambda piece=piece, b=b, s=s: piece(b, s))
            if r:
                times[n].append(spent)
    first = Case(build, "pcgrad", k, self_check=True)
    check = cpu_time(lambda: first.step(batches[0])) - statistics.median(times["pcgrad"])
    base = statistics.median(times["vanilla"])
    params = sum(p.numel() for p in cases["vanilla"].model.parameters())
    print(f"\n{name} ({params:,d} parameters), batch {size}, k = {k}: vanilla {1e3 * base:.1f} ms")
    print(f"{'step':16} {'CPU ms':>7} {'x vanilla [IQR]':>20}")
    for n, spent in times.items():
        q1, _, q3 = (q / base for q in statistics.quantiles(spent, n=4))
        median = statistics.median(spent)
        print(f"{n:16} {1e3 * median:7.1f} {median / base:8.2f} [{q1:.2f}, {q3:.2f}]")
    print(f"{'self-check':16} {1e3 * check:7.1f} {check / base:8.2f} (once per run, pcgrad)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} interleaved rounds")
    bench_model("cpu-profile U-Net", project_unet, args.k, args.batch, args.rounds)
    bench_model("diffusers UNet2DModel", diffusers_unet, args.k, args.batch, args.rounds)


if __name__ == "__main__":
    main()
