"""Training checkpoints: read with named errors, written only when finite, and resumed across a
code edit only when the user says so.

A checkpoint records the code version (the hash of the package's source) that wrote it. When a
source file has changed since, $MTL_DIFFUSION_ON_CODE_CHANGE decides: "error" (default) stops
and explains, "resume" continues the run with the new code, "restart" sets the old checkpoint
aside (renamed, not deleted) and starts from step 0.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from mtl_diffusion.cache import atomic_save, code_version

CODE_CHANGE_ENV = "MTL_DIFFUSION_ON_CODE_CHANGE"
POLICIES = ("error", "resume", "restart")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used as it is; the message says what to do."""


def code_change_policy() -> str:
    """$MTL_DIFFUSION_ON_CODE_CHANGE, checked (default "error")."""
    policy = os.environ.get(CODE_CHANGE_ENV, "error")
    if policy not in POLICIES:
        raise ValueError(f"{CODE_CHANGE_ENV} must be one of {POLICIES}, got {policy!r}")
    return policy


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The state saved at `path`; CheckpointError naming the file when it cannot be read."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # truncated, garbage, or written by an incompatible version
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({error!r}): delete it to start this run from "
            "step 0, or put back a good copy"
        ) from error
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a training checkpoint: delete it or move it away")
    return state


def resume_allowed(state: dict[str, Any], path: Path) -> bool:
    """True to resume `state`; False when the policy says restart (the file is set aside);
    CheckpointError under the default policy when the code changed since it was written."""
    written = state.get("code_version")
    if written == code_version():
        return True
    policy = code_change_policy()
    if policy == "resume":
        warnings.warn(
            f"resuming {path}, written by code {written}, with code {code_version()}", stacklevel=3
        )
        return True
    if policy == "restart":
        aside = path.with_name(f"{path.name}.code-{written}")
        path.replace(aside)
        warnings.warn(
            f"code changed: {path} moved to {aside}; the run starts from step 0", stacklevel=3
        )
        return False
    raise CheckpointError(
        f"{path} (step {state['step']}) was written by code version {written}; the source has "
        f"changed since (now {code_version()}). Set {CODE_CHANGE_ENV}=resume to continue it with "
        f"this code, or {CODE_CHANGE_ENV}=restart to set it aside and start from step 0"
    )


def non_finite(state: dict[str, Any], sections: tuple[str, ...] = ("model", "ema")) -> list[str]:
    """Names of the tensors of `sections` (state dicts) that hold a NaN or an infinity."""
    bad = []
    for section in sections:
        for name, value in state.get(section, {}).items():
            if torch.is_tensor(value) and value.is_floating_point() and not value.isfinite().all():
                bad.append(f"{section}.{name}")
    return bad


def write_checkpoint(state: dict[str, Any], path: Path) -> bool:
    """Write `state` atomically (the previous file stays until the new one is complete);
    False, with a warning, when the disk refuses (training goes on, in memory)."""
    try:
        atomic_save({**state, "code_version": code_version()}, path)
    except OSError as error:
        warnings.warn(
            f"could not write checkpoint {path} ({error}); training continues without it",
            stacklevel=3,
        )
        return False
    return True
