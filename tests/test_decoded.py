"""An image folder decodes once into a mapped array that reads back bitwise as decoding it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from mtl_diffusion import data
from mtl_diffusion.decoded import folder_split

SETTINGS = {"split": "train", "image_size": 8, "channels": 3, "test_fraction": 0.25,
            "max_images": 0}  # fmt: skip


def make_folder(root, mode: str = "RGB", count: int = 8):
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(count):
        if mode == "I;16":
            pixels = rng.integers(0, 65536, (11, 13), dtype=np.uint16)
        else:
            pixels = rng.integers(0, 256, (11, 13, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.png")
    return root


def decoded(folder, store, **changes):
    s = {**SETTINGS, **changes}
    args = (s["split"], s["image_size"], s["channels"], s["test_fraction"], s["max_images"])
    return folder_split(str(folder), *args, store)


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("I;16", 1)])
def test_the_mapped_array_equals_decoding_the_images(tmp_path, mode: str, channels: int) -> None:
    folder = make_folder(tmp_path / "images", mode)
    store = tmp_path / "store"
    for split in ("train", "test"):
        direct = data.load_folder_split(folder, split, 8, channels, test_fraction=0.25)
        assert torch.equal(decoded(folder, store, split=split, channels=channels), direct)
    stored = [np.load(f, mmap_mode="r").dtype for f in sorted(store.glob("*.npy"))]
    assert stored == [np.uint8 if mode == "RGB" else np.float32] * 2  # 16-bit: not integral


def test_a_second_use_maps_without_decoding_and_a_changed_file_decodes_again(
    tmp_path, monkeypatch
) -> None:
    folder = make_folder(tmp_path / "images")
    store = tmp_path / "store"
    first = decoded(folder, store)
    real = data.decode_levels
    monkeypatch.setattr(data, "decode_levels", lambda *a: pytest.fail("decoded again"))
    assert torch.equal(decoded(folder, store), first)
    monkeypatch.setattr(data, "decode_levels", real)
    image = folder / "img0.png"
    Image.fromarray(np.zeros((11, 13, 3), np.uint8)).save(image)
    os.utime(image, ns=(1, 1))  # a new size and modification time
    changed = decoded(folder, store)
    assert torch.equal(changed, data.load_folder_split(folder, "train", 8, 3, test_fraction=0.25))
    assert not torch.equal(changed, first) and len(list(store.glob("*.npy"))) == 2
    smaller = data.load_folder_split(folder, "train", 4, 3, test_fraction=0.25)
    assert torch.equal(decoded(folder, store, image_size=4), smaller)
