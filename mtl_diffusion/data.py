"""Datasets: the 8x8 digits bundled with scikit-learn, 2-D toys, and image folders.

Every loader returns a float32 tensor; images are (N, C, H, W) in [-1, 1]. Nothing is downloaded.
The training loop draws its own batches (``torch.randint(len(data), (B,), generator=g)``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits

SPLITS = ("train", "test")
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0
TOYS = ("8gaussians", "moons", "swissroll", "checkerboard")
TOY_SIZE = 20_000
TOY_SEEDS = {"train": 0, "test": 1}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
GAUSSIANS_RADIUS = 1.0
GAUSSIANS_STD = 0.1
FOLDER_SPLIT_SEED = 0


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Raw digits (N, 8, 8) in [0, 16], labels (N,), and the fixed stratified split indices."""
    bunch = load_digits()
    images, labels = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test.append(members[: round(DIGITS_TEST_FRACTION * len(members))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return images, labels, {"train": train_idx, "test": test_idx}


def load_digits_split(split: str) -> torch.Tensor:
    """Digits of one fixed split as (N, 1, 8, 8) float32 in [-1, 1] (pixel / 8 - 1).

    The split is stratified by label, 25 % test, drawn once with seed 0: 1,347 train / 450 test.
    """
    _check_split(split)
    images, _, idx = _digits_arrays()
    return torch.from_numpy(images[idx[split]] / 8.0 - 1.0).unsqueeze(1)


def load_digits_labels(split: str) -> torch.Tensor:
    """Labels (N,) int64 matching ``load_digits_split(split)`` row for row."""
    _check_split(split)
    _, labels, idx = _digits_arrays()
    return torch.from_numpy(labels[idx[split]])


def gaussian_mixture_8() -> tuple[torch.Tensor, float]:
    """Means (8, 2) and the isotropic std of the equal-weight "8gaussians" mixture."""
    angles = torch.arange(8, dtype=torch.float32) * (math.pi / 4)
    means = GAUSSIANS_RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return means, GAUSSIANS_STD


def toy_2d(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points (n, 2) float32 from a 2-D toy, scaled to a per-axis std of about 0.5-0.8."""
    if name not in TOYS:
        raise ValueError(f"name must be one of {TOYS}, got {name!r}")
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    g = generator

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    if name == "8gaussians":
        means, std = gaussian_mixture_8()
        return means[torch.randint(8, (n,), generator=g)] + std * normal(n, 2)
    if name == "moons":
        theta = math.pi * uniform(n)
        upper = torch.rand(n, generator=g) < 0.5
        x = torch.where(upper, torch.cos(theta), 1.0 - torch.cos(theta))
        y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
        return torch.stack([x - 0.5, y - 0.25], dim=1) + 0.05 * normal(n, 2)
    if name == "swissroll":
        t = 1.5 * math.pi * (1.0 + 2.0 * uniform(n))
        points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 10.0
        return points + 0.03 * normal(n, 2)
    x = 4.0 * uniform(n) - 2.0
    y = uniform(n) - 2.0 * torch.randint(2, (n,), generator=g).float()
    y = y + torch.floor(x).remainder(2.0)
    return torch.stack([x, y], dim=1) / 2.0


def _image_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # integer grey, scaled from 0..65535


def _centre_square(img: Image.Image, image_size: int) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return img.resize((image_size, image_size), Image.Resampling.BICUBIC)


def _grey_levels(img: Image.Image, file: Path) -> Image.Image:
    """A 16-bit or 32-bit integer grey image (0..65535) or a float one (0..1) as a float
    image of 0..255 levels; ValueError naming the file for values outside those ranges."""
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        low, high, top = 0.0, 1.0, 1.0
    else:
        low, high, top = 0.0, 65535.0, 65535.0
    if not np.isfinite(values).all() or values.min() < low or values.max() > high:
        raise ValueError(
            f"{file}: {img.mode} pixels must lie in [{low:g}, {high:g}], got "
            f"[{values.min():g}, {values.max():g}]; convert the image to 8 or 16 bits"
        )
    return Image.fromarray((values * (255.0 / top)).astype(np.float32), mode="F")


def _load_image(file: Path, image_size: int, mode: str) -> np.ndarray:
    """(C, image_size, image_size) float32 levels 0..255 of the centre square of `file`."""
    try:
        with Image.open(file) as img:
            if img.mode in HIGH_DEPTH or img.mode == "F":
                grey = _centre_square(_grey_levels(img, file), image_size)
                array = np.asarray(grey, dtype=np.float32)
                array = array if mode == "L" else np.stack([array] * 3, axis=-1)
            else:
                array = np.asarray(_centre_square(img.convert(mode), image_size), np.float32)
    except Exception as error:  # PIL raises OSError, SyntaxError, ... for broken files
        if isinstance(error, ValueError) and str(file) in str(error):
            raise
        raise ValueError(f"{file}: cannot read this image ({error})") from error
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_levels(files: list[Path], image_size: int, channels: int) -> np.ndarray:
    """(N, channels, image_size, image_size) float32 levels 0..255 of the centre squares."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size}")
    mode = "L" if channels == 1 else "RGB"
    return np.stack([_load_image(f, image_size, mode) for f in files])


def levels_to_images(levels: np.ndarray) -> torch.Tensor:
    """Levels 0..255 (any numeric dtype) as float32 images in [-1, 1]."""
    return torch.from_numpy(levels.astype(np.float32, copy=False) / 127.5 - 1.0).float()


def _load_files(files: list[Path], image_size: int, channels: int) -> torch.Tensor:
    return levels_to_images(decode_levels(files, image_size, channels))


def _folder_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"path must be an existing folder of images, got {str(path)!r}")
    files = _image_files(path)
    if not files:
        raise ValueError(f"path {str(path)!r} holds no images with suffix in {IMAGE_SUFFIXES}")
    return files


def load_image_folder(
    path: str | Path, image_size: int, channels: int = 3, limit: int | None = None
) -> torch.Tensor:
    """Every png/jpg/jpeg/webp under ``path`` (recursive, sorted by path), centre-cropped to a
    square and resized (bicubic) to (N, channels, image_size, image_size) float32 in [-1, 1]."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be None or a positive integer, got {limit}")
    return _load_files(_folder_files(path)[:limit], image_size, channels)


def folder_split_files(
    path: str | Path, split: str, test_fraction: float = 0.1, max_images: int = 0
) -> list[Path]:
    """The files of one split of an image folder, sorted by path.

    Of the first ``max_images`` files (0: all), a fixed draw (seed FOLDER_SPLIT_SEED) of
    round(test_fraction * N) files, at least one, is the test split; the others are train.
    """
    _check_split(split)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if max_images < 0:
        raise ValueError(f"max_images must be >= 0 (0: every image), got {max_images}")
    files = _folder_files(path)[: max_images or None]
    num_test = max(1, round(test_fraction * len(files)))
    if num_test >= len(files):
        raise ValueError(
            f"path {str(path)!r} has {len(files)} images: too few for a train and a test split "
            f"with test_fraction={test_fraction}"
        )
    rng = np.random.default_rng(FOLDER_SPLIT_SEED)
    is_test = np.zeros(len(files), dtype=bool)
    is_test[rng.permutation(len(files))[:num_test]] = True
    return [f for f, test in zip(files, is_test, strict=True) if test == (split == "test")]


def load_folder_split(
    path: str | Path,
    split: str,
    image_size: int,
    channels: int = 3,
    test_fraction: float = 0.1,
    max_images: int = 0,
) -> torch.Tensor:
    """One split of an image folder (see ``folder_split_files``) as in ``load_image_folder``."""
    files = folder_split_files(path, split, test_fraction, max_images)
    return _load_files(files, image_size, channels)


def check_training_data(data: torch.Tensor, images: bool, what: str = "data") -> None:
    """Raise ValueError unless `data` is finite float data with one sample per row, and for
    images (N, C, H, W) in [-1, 1] (the range every model and metric here assumes)."""
    if not isinstance(data, torch.Tensor) or not data.is_floating_point() or data.dim() < 2:
        kind = f"{data.dtype} {tuple(data.shape)}" if isinstance(data, torch.Tensor) else type(data)
        raise ValueError(f"{what} must be a float tensor with one sample per row, got {kind}")
    if not torch.isfinite(data).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    if images:
        low, high = float(data.min()), float(data.max())
        if data.dim() != 4 or low < -1.0 - 1e-4 or high > 1.0 + 1e-4:
            raise ValueError(
                f"{what} must be images (N, C, H, W) in [-1, 1], got shape {tuple(data.shape)} "
                f"with values in [{low:g}, {high:g}] (8-bit images: x / 127.5 - 1)"
            )


def load_dataset(name: str, split: str = "train", **kw) -> torch.Tensor:
    """Dispatch by name: "digits"; "toy:<name>" (kw: n, default 20,000; a fixed seed per split);
    "folder" (kw of ``load_folder_split``: a fixed held-out share of the folder is "test")."""
    _check_split(split)
    if name == "digits":
        if kw:
            raise ValueError(f"digits takes no keyword arguments, got {sorted(kw)}")
        return load_digits_split(split)
    if name.startswith("toy:"):
        unknown = set(kw) - {"n"}
        if unknown:
            raise ValueError(f"toy datasets take only the keyword n, got {sorted(unknown)}")
        g = torch.Generator().manual_seed(TOY_SEEDS[split])
        return toy_2d(name.removeprefix("toy:"), kw.get("n", TOY_SIZE), g)
    if name == "folder":
        return load_folder_split(split=split, **kw)
    allowed = ["digits", "folder"] + [f"toy:{t}" for t in TOYS]
    raise ValueError(f"name must be one of {allowed}, got {name!r}")
