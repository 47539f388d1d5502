"""Train one run from the command line, as a job: the result lands in the cache where the
notebooks' train_run(config, name) finds it, so a notebook then loads it instead of training.

    python -m mtl_diffusion.train --profile paper --name quickstart \\
        --set data.path=/data/ffhq --set train.steps=400000

Same keys and checks as a notebook's config_overrides; an interrupted run resumes from its
checkpoint. On several processes (one node, 4 GPUs; or CPUs with the gloo backend):

    torchrun --standalone --nproc_per_node 4 -m mtl_diffusion.train --profile paper ...

train.batch_size is the GLOBAL batch (each rank trains on its B / N rows); the update equals
the single-process update of that batch for every MTL method. Backend: nccl on CUDA, gloo on
the CPU (MTL_DIFFUSION_BACKEND overrides). Rank 0 writes the checkpoints and the result and
evaluates while the others wait (timeout MTL_DIFFUSION_DIST_TIMEOUT_MIN, default 180 minutes).

    python -m mtl_diffusion.train --plan 04 --profile paper --set data.path=/data/ffhq

executes notebook 04 without training (see mtl_diffusion.plan) and prints one command per run
it still needs, for a scheduler; run it again once they finish.
"""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from mtl_diffusion import config
from mtl_diffusion.affinity import training_snapshots
from mtl_diffusion.cache import cache_path
from mtl_diffusion.run_notebooks import check_params, parse_value, run_one, sources
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
    parser.add_argument(
        "--snapshots",
        metavar="S1,S2,...",
        help="train the vanilla run of the config, keeping the raw weights at these steps "
        "(what the task-affinity and convergence measurements read; see affinity)",
    )
    parser.add_argument(
        "--plan",
        metavar="NN",
        help="train nothing: print the commands of the runs notebook NN still needs (its "
        "--set options become the notebook's config_overrides)",
    )
    parser.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE",
        help="with --plan: a notebook parameter (e.g. -p num_seeds=5)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.plan:
        return print_plan(args.plan, args.profile, args.set, args.param, args.seed)
    try:
        cfg = config_from_args(args.profile, args.set, args.seed)
    except config.ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    steps = snapshot_steps(args.snapshots) if args.snapshots else None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        start_process_group(cfg.train.device)
    try:
        if steps is not None:
            snaps = training_snapshots(cfg, steps, args.name, train=True)
        else:
            result = train_run(cfg, args.name, evaluate=not args.no_eval, train=True)
    finally:
        if world > 1:
            dist.destroy_process_group()
    if world > 1 and int(os.environ["RANK"]) != 0:
        return
    if args.snapshots:
        print(f"trained to step {snaps.steps[-1]} ({snaps.train_seconds:.0f} s), weights kept at "
              f"steps {list(snaps.steps)}")  # fmt: skip
        return
    history = result.history
    last = history.evals[-1] if history.evals else {}
    print(f"trained {cfg.train.steps} steps ({history.seconds:.0f} s); final loss "
          f"{history.losses[-1]:.4f}; last evaluation {last}")  # fmt: skip
    print(f"result: {cache_path(cfg, args.name, {'evaluate': not args.no_eval})}")


def snapshot_steps(text: str) -> list[int]:
    """--snapshots S1,S2,...: strictly increasing step counts >= 0 (SystemExit otherwise)."""
    try:
        steps = [int(s) for s in text.split(",")]
    except ValueError:
        steps = []
    if not steps or steps[0] < 0 or any(b <= a for a, b in zip(steps[:-1], steps[1:], strict=True)):
        raise SystemExit(
            f"error: --snapshots takes strictly increasing step counts >= 0 separated by commas "
            f"(e.g. --snapshots 250,500,1000), got {text!r}"
        )
    return steps


def config_from_args(profile: str, sets: list[str], seed: int | None) -> config.Config:
    """The Config of `--profile`, `--set key=value` (one each; a value may hold spaces) and
    `--seed`: what plan.command writes for a run, read back."""
    overrides: dict = {}
    for item in sets:
        overrides.update(config.parse_overrides(shlex.quote(item)))
    if seed is not None:
        overrides["seed"] = seed
    return config.load(profile, overrides)


def print_plan(
    notebook: str, profile: str, sets: list[str], params: list[str], seed: int | None
) -> None:
    """Execute `notebook` without training (MTL_DIFFUSION_TRAIN=plan) and print the commands
    of the missing runs it stops at (plan.RunsNeeded), one line each."""
    found = sources([notebook])
    if len(found) != 1:
        raise SystemExit(f"--plan {notebook} matches {[p.stem for p in found]}: name one notebook")
    source = found[0]
    bad = [item for item in params if "=" not in item]
    if bad:
        raise SystemExit(f"error: -p takes NAME=VALUE (e.g. -p num_seeds=5), got {bad[0]!r}")
    values = dict(item.split("=", 1) for item in params)
    notebook_params = {name: parse_value(value) for name, value in values.items()}
    if sets:
        notebook_params["config_overrides"] = " ".join(shlex.quote(s) for s in sets)
    if seed is not None:
        notebook_params["seed"] = seed
    notebook_params = check_params([source], profile, notebook_params)
    with tempfile.TemporaryDirectory() as folder:
        listing = Path(folder) / "plan.txt"
        os.environ.update(MTL_DIFFUSION_TRAIN="plan", MTL_DIFFUSION_PLAN=str(listing))
        os.environ.setdefault("MTL_DIFFUSION_QUIET", "1")
        try:
            run_one(source, profile, notebook_params, prepare_only=False)
        except Exception as error:
            if not listing.exists():
                message = f"{source.stem} failed before it asked for a run: {error}"
                raise SystemExit(message) from None
            print(f"# {source.stem} under {profile}: runs missing from the cache")
            print(listing.read_text(), end="")
            print("# after they finish, run --plan again: later cells may need runs that "
                  "depend on these (or the notebook now completes from the cache)")  # fmt: skip
            return
    print(f"# {source.stem} under {profile}: every run it needs is in the cache; it ran through")


def start_process_group(device: str) -> None:
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU); one GPU per local rank."""
    backend = os.environ.get("MTL_DIFFUSION_BACKEND") or ("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: train.device='cuda' but no GPU is visible to this process")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # rank 0 evaluates (sampling, features) while the others wait in their next all-reduce:
    # longer than the backends' default timeouts at paper scale
    minutes = float(os.environ.get("MTL_DIFFUSION_DIST_TIMEOUT_MIN", "180"))
    dist.init_process_group(backend, timeout=timedelta(minutes=minutes))


if __name__ == "__main__":
    main()
