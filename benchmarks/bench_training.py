"""Training steps per second and sampling time of the cpu-profile denoisers, in one run.

    python benchmarks/bench_training.py [--steps 40] [--profile cpu]

Prints one row per model: parameters, steps/s (median of timed blocks), the time to draw the
profile's evaluation samples, and each model's step time as a ratio to the U-Net's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtl_diffusion import config
from mtl_diffusion.runs import generate
from mtl_diffusion.train import Trainer


def steps_per_second(trainer: Trainer, steps: int, blocks: int = 5) -> float:
    """Median rate over `blocks` timed blocks after two warm-up steps."""
    trainer.train_step()
    trainer.train_step()
    rates = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(steps // blocks):
            trainer.train_step()
        rates.append((steps // blocks) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, profile {args.profile}")
    rows = []
    for arch in ("unet", "dit"):
        cfg = config.load(args.profile, {"model.arch": arch})
        trainer = Trainer(cfg)
        params = sum(p.numel() for p in trainer.model.parameters())
        rate = steps_per_second(trainer, args.steps)
        start = time.perf_counter()
        generate(trainer.ema, cfg, cfg.eval.num_samples)
        sampling = time.perf_counter() - start
        rows.append((arch, params, rate, sampling, cfg))
    base = rows[0][2]
    print(f"{'model':6} {'params':>9} {'steps/s':>8} {'step time / U-Net':>18} {'sampling':>30}")
    for arch, params, rate, sampling, cfg in rows:
        what = f"{cfg.eval.num_samples} x {cfg.eval.sampler.upper()}-{cfg.eval.sampling_steps}"
        print(f"{arch:6} {params:9,d} {rate:8.1f} {base / rate:18.2f} {sampling:9.1f} s ({what})")
    print(f"batch {rows[0][4].train.batch_size}, {rows[0][4].data.name}")


if __name__ == "__main__":
    main()
