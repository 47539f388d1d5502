"""Training runs as jobs: under the paper profile a notebook does not train in its kernel; it
loads the runs it needs from the cache and, for missing ones, stops with the exact commands that
train them (one line per run, ready for torchrun or a scheduler).

    MTL_DIFFUSION_TRAIN=plan        never train in this process: list missing runs (paper default)
    MTL_DIFFUSION_TRAIN=in-process  train missing runs here (every other profile's default)
    MTL_DIFFUSION_PLAN=FILE         also append the commands to FILE (`python -m
                                    mtl_diffusion.train --plan NN` uses it)
"""

from __future__ import annotations

import ast
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtl_diffusion.config import Config, load

POLICIES = ("plan", "in-process")
PLANNED_PROFILES = ("paper",)  # profiles whose runs are jobs by default


class RunsNeeded(RuntimeError):
    """Runs a notebook needs are not in the cache and this process does not train them."""

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands
        lines = "\n".join(commands)
        super().__init__(
            f"{len(commands)} training run(s) are not in the cache yet. Train them as jobs (one "
            "line each; prefix `torchrun --nproc_per_node N` for several GPUs), then run this "
            f"notebook again; runs already trained are loaded:\n{lines}\n"
            "(MTL_DIFFUSION_TRAIN=in-process trains them inside this process instead.)"
        )


def policy(config: Config) -> str:
    """How missing runs of `config` are produced: "plan" or "in-process" (see module doc)."""
    value = os.environ.get("MTL_DIFFUSION_TRAIN", "")
    if value and value not in POLICIES:
        raise ValueError(f"MTL_DIFFUSION_TRAIN must be one of {POLICIES}, got {value!r}")
    return value or ("plan" if config.profile in PLANNED_PROFILES else "in-process")


def overrides(config: Config) -> dict[str, Any]:
    """The dotted keys (and seed) where `config` differs from its profile's defaults."""
    default = flatten(load(config.profile).to_dict())
    return {k: v for k, v in flatten(config.to_dict()).items() if default.get(k) != v}


def command(
    config: Config, name: str, *, evaluate: bool = True, snapshots: Sequence[int] = ()
) -> str:
    """The shell command that trains `config` into the cache entry train_run(config, name)
    (with `snapshots`: affinity.training_snapshots(config, snapshots, name))."""
    parts = ["python", "-m", "mtl_diffusion.train", "--profile", config.profile, "--name", name]
    for key, value in sorted(overrides(config).items()):
        parts += ["--seed", str(value)] if key == "seed" else ["--set", f"{key}={_text(value)}"]
    if not evaluate:
        parts.append("--no-eval")
    if snapshots:
        parts += ["--snapshots", ",".join(str(int(s)) for s in snapshots)]
    return shlex.join(parts)


def _text(value: Any) -> str:
    """How `value` is written in --set key=VALUE so that the command reads it back as itself:
    a plain string where it does not parse as a Python literal, repr otherwise."""
    if isinstance(value, str):
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return repr(value)


def refuse_missing(commands: list[str]) -> None:
    """Raise RunsNeeded for `commands` (if any), after appending them to MTL_DIFFUSION_PLAN."""
    if not commands:
        return
    target = os.environ.get("MTL_DIFFUSION_PLAN")
    if target:
        with Path(target).open("a") as handle:
            handle.write("".join(f"{line}\n" for line in commands))
    raise RunsNeeded(commands)


def flatten(tree: dict[str, Any]) -> dict[str, Any]:
    """{"train": {"steps": 5}, "seed": 0} -> {"train.steps": 5, "seed": 0} (profile dropped)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        elif key != "profile":
            flat[key] = value
    return flat
