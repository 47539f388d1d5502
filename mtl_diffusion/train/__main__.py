"""Train one run from the command line, as a job: the result lands in the cache where the
notebooks' train_run(config, name) finds it, so a notebook then loads it instead of training.

    python -m mtl_diffusion.train --profile paper --name quickstart \\
        --set data.path=/data/ffhq --set train.steps=400000

Same keys and checks as a notebook's config_overrides; an interrupted run resumes from its
checkpoint. On several processes (one node, 4 GPUs; or CPUs with the gloo backend):

    torchrun --standalone --nproc_per_node 4 -m mtl_diffusion.train --profile paper ...

train.batch_size is the GLOBAL batch (each rank trains on its B / N rows); the update equals
the single-process update of that batch for every MTL method. Backend: nccl on CUDA, gloo on
the CPU (MTL_DIFFUSION_BACKEND overrides). Rank 0 writes the checkpoints and the result.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist

from mtl_diffusion import config
from mtl_diffusion.cache import cache_path
from mtl_diffusion.runs import train_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mtl_diffusion.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", default="cpu", choices=sorted(config.PROFILES))
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a config override"
    )
    parser.add_argument("--seed", type=int, default=None, help="the run's seed (config key seed)")
    parser.add_argument("--name", default="run", help="cache name (a notebook's run name)")
    parser.add_argument("--no-eval", action="store_true", help="train without sample metrics")
    args = parser.parse_args(argv)
    try:
        overrides = config.parse_overrides(" ".join(args.set))
        if args.seed is not None:
            overrides["seed"] = args.seed
        cfg = config.load(args.profile, overrides)
    except config.ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        start_process_group(cfg.train.device)
    try:
        result = train_run(cfg, args.name, evaluate=not args.no_eval)
    finally:
        if world > 1:
            dist.destroy_process_group()
    if world > 1 and int(os.environ["RANK"]) != 0:
        return
    history = result.history
    last = history.evals[-1] if history.evals else {}
    print(f"trained {cfg.train.steps} steps ({history.seconds:.0f} s); final loss "
          f"{history.losses[-1]:.4f}; last evaluation {last}")  # fmt: skip
    print(f"result: {cache_path(cfg, args.name, {'evaluate': not args.no_eval})}")


def start_process_group(device: str) -> None:
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU); one GPU per local rank."""
    backend = os.environ.get("MTL_DIFFUSION_BACKEND") or ("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: train.device='cuda' but no GPU is visible to this process")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)


if __name__ == "__main__":
    main()
