"""A small RGB image folder made from the bundled digits, for running the paper profile's
image-folder path offline (``paper-smoke``, CI) without a real dataset.

    python -m mtl_diffusion.example_folder build/example_images      # 500 PNGs of 32x32

Each image is one digit (train and test splits alike), upsampled, drawn in a random colour on a
random darker background: colour makes the three channels differ, as in real photographs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mtl_diffusion.data import load_digits_split

SEED = 0
MARKER = ".mtl_diffusion_example"  # written into every folder this module creates


def example_images(count: int = 500, size: int = 32, seed: int = SEED) -> np.ndarray:
    """(count, size, size, 3) uint8 coloured digits, deterministic for ``seed``."""
    if count < 1 or size < 8:
        raise ValueError(f"count must be >= 1 and size >= 8, got count={count}, size={size}")
    digits = torch.cat([load_digits_split("train"), load_digits_split("test")])
    rng = np.random.default_rng(seed)
    chosen = digits[torch.from_numpy(rng.permutation(len(digits))[:count])]
    if len(chosen) < count:
        raise ValueError(f"count must be at most {len(digits)}, got {count}")
    ink = (F.interpolate(chosen, size=size, mode="bilinear", align_corners=False) + 1) / 2
    ink = ink.clamp(0, 1).permute(0, 2, 3, 1).numpy()  # (count, size, size, 1) in [0, 1]
    foreground = rng.uniform(0.5, 1.0, (count, 1, 1, 3))
    background = rng.uniform(0.0, 0.4, (count, 1, 1, 3))
    return np.round(255 * (ink * foreground + (1 - ink) * background)).astype(np.uint8)


def write_example_folder(path: str | Path, count: int = 500, size: int = 32) -> Path:
    """Write ``example_images`` as PNGs into ``path`` (written to a temporary folder first and
    renamed, so an interrupted call leaves no half folder). An existing ``path`` is replaced only
    when it is empty or holds only what this function wrote (MARKER and its numbered PNGs): user
    files are never touched."""
    path = Path(path)
    if path.exists():
        own = {MARKER} if (path / MARKER).is_file() else set()
        foreign = [
            p.name for p in (path.iterdir() if path.is_dir() else [path])
            if not (own and (p.name in own or re.fullmatch(r"\d{5}\.png", p.name)))
        ]  # fmt: skip
        if foreign:
            raise ValueError(
                f"refusing to replace {path}: it holds files this command did not write "
                f"({', '.join(sorted(foreign)[:3])}...); choose a new or empty folder"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
    try:
        for i, image in enumerate(example_images(count, size)):
            Image.fromarray(image).save(tmp / f"{i:05d}.png")
        (tmp / MARKER).write_text("written by python -m mtl_diffusion.example_folder\n")
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("path", help="folder to (re)create")
    parser.add_argument("--count", type=int, default=500, help="number of images")
    parser.add_argument("--size", type=int, default=32, help="side in pixels")
    args = parser.parse_args()
    print(write_example_folder(args.path, args.count, args.size))


if __name__ == "__main__":
    main()
