"""Train one run from the command line, as a job: the result lands in the cache where the
notebooks' train_run(config, name) finds it, so a notebook then loads it instead of training.

    python -m mtl_diffusion.train --profile paper --name quickstart \\
        --set data.path=/data/ffhq --set train.steps=400000

Same keys and checks as a notebook's config_overrides; an interrupted run resumes from its
checkpoint. Multi-GPU (torchrun / DistributedDataParallel) is not available yet: under torchrun
with more than one process this command refuses to start.
"""

from __future__ import annotations

import argparse
import os

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
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit(
            "multi-process training (torchrun, DistributedDataParallel) is not available yet: "
            "run one process per job"
        )
    try:
        overrides = config.parse_overrides(" ".join(args.set))
        if args.seed is not None:
            overrides["seed"] = args.seed
        cfg = config.load(args.profile, overrides)
    except config.ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    result = train_run(cfg, args.name, evaluate=not args.no_eval)
    history = result.history
    last = history.evals[-1] if history.evals else {}
    print(f"trained {cfg.train.steps} steps ({history.seconds:.0f} s); final loss "
          f"{history.losses[-1]:.4f}; last evaluation {last}")  # fmt: skip
    print(f"result: {cache_path(cfg, args.name, {'evaluate': not args.no_eval})}")


if __name__ == "__main__":
    main()
