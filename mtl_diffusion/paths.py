"""Absolute project paths, so notebooks behave the same from any working directory."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "figures"
BUILD = Path(os.environ.get("MTL_DIFFUSION_BUILD", ROOT / "build"))
ARTIFACTS = Path(os.environ.get("MTL_DIFFUSION_ARTIFACTS", ROOT / "artifacts"))
NOTEBOOKS = ROOT / "notebooks"


def artifacts_dir(profile: str) -> Path:
    """Folder for one profile's caches and checkpoints (smoke never touches cpu or paper)."""
    path = ARTIFACTS / profile
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"cannot create {path} ({error.strerror or error}): set MTL_DIFFUSION_ARTIFACTS to a "
            "writable folder"
        ) from error
    return path


def figures_dir(profile: str) -> Path:
    """Where figures go outside a notebook run: build/figures/<profile> (the committed
    figures/ is written only by make figures, see mtl_diffusion.notebook)."""
    path = BUILD / "figures" / profile
    path.mkdir(parents=True, exist_ok=True)
    return path
