"""An image folder decoded once: the split's pixel levels stored as one .npy array, keyed by
the folder's files (relative path, size, modification time), the decoding settings, the
decoding code and the imaging libraries' versions. Every later process, and every rank of a
torchrun job, maps that array instead of decoding the images again (rank 0 decodes, the others
wait for it). Levels are stored as uint8 when every level is an integer (8-bit images), as
float32 otherwise (16-bit or float images): the images read back are bitwise those decoded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from mtl_diffusion import data
from mtl_diffusion.cache import atomic_write, folder_fingerprint, library_versions
from mtl_diffusion.mtl.distributed import current_ranks


def decoded_key(
    path: str, split: str, image_size: int, channels: int, test_fraction: float, max_images: int
) -> str:
    """What the decoded array depends on, hashed."""
    parts = [
        folder_fingerprint(path),
        [split, image_size, channels, test_fraction, max_images],
        hashlib.sha256(Path(data.__file__).read_bytes()).hexdigest(),
        library_versions(),
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def folder_split(
    path: str,
    split: str,
    image_size: int,
    channels: int,
    test_fraction: float,
    max_images: int,
    store: Path,
) -> torch.Tensor:
    """data.load_folder_split(...), decoded into `store` on first use and mapped after."""
    key = decoded_key(path, split, image_size, channels, test_fraction, max_images)
    file = store / f"{Path(path).name}-{split}-{key}.npy"
    ranks = current_ranks()
    if ranks.main and not file.exists():
        files = data.folder_split_files(path, split, test_fraction, max_images)
        levels = data.decode_levels(files, image_size, channels)
        stored = levels.astype(np.uint8) if _integral(levels) else levels
        atomic_write(file, lambda handle: np.save(handle, stored))
    if ranks.world > 1:
        dist.barrier()  # rank 0 has written the array
    return data.levels_to_images(np.load(file, mmap_mode="r"))


def _integral(levels: np.ndarray) -> bool:
    return bool(np.all(levels == np.round(levels)) and levels.min() >= 0 and levels.max() <= 255)
