"""Datasets: digits split against scikit-learn's raw data, toy geometry, image folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from mtl_diffusion.builders import dataset_from_config
from mtl_diffusion.config import load
from mtl_diffusion.data import (
    TOYS,
    folder_split_files,
    gaussian_mixture_8,
    load_dataset,
    load_digits_labels,
    load_digits_split,
    load_folder_split,
    load_image_folder,
    toy_2d,
)


def _rows(images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """(image pixels, label) rows sorted lexicographically: a multiset fingerprint."""
    table = np.concatenate([images.reshape(len(images), -1).numpy(), labels[:, None].numpy()], 1)
    return table[np.lexsort(table.T[::-1])]


def test_digits_shapes_range_and_sizes():
    for split, size in (("train", 1347), ("test", 450)):
        x, y = load_digits_split(split), load_digits_labels(split)
        assert x.shape == (size, 1, 8, 8) and x.dtype == torch.float32
        assert y.shape == (size,) and y.dtype == torch.int64
        assert x.min() == -1.0 and x.max() == 1.0


def test_digits_split_is_a_labelled_partition_of_the_raw_data():
    raw = load_digits()
    expected = _rows(torch.from_numpy(raw.images / 8.0 - 1.0), torch.from_numpy(raw.target))
    x = torch.cat([load_digits_split("train"), load_digits_split("test")]).double()
    y = torch.cat([load_digits_labels("train"), load_digits_labels("test")])
    np.testing.assert_array_equal(_rows(x, y), expected)


def test_digits_split_is_fixed_and_stratified():
    assert torch.equal(load_digits_split("test"), load_digits_split("test"))
    train, test = (torch.bincount(load_digits_labels(s)).double() for s in ("train", "test"))
    fraction = test / (train + test)
    assert torch.all((fraction - 0.25).abs() < 0.01)


@pytest.mark.parametrize("call", [load_digits_split, load_digits_labels])
def test_digits_bad_split(call):
    with pytest.raises(ValueError, match="split"):
        call("validation")


@pytest.mark.parametrize("name", TOYS)
def test_toy_shapes_scale_and_seeding(name):
    a = toy_2d(name, 5000, torch.Generator().manual_seed(3))
    assert a.shape == (5000, 2) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.all((a.std(0) > 0.3) & (a.std(0) < 1.2)) and a.abs().max() < 3
    assert torch.equal(a, toy_2d(name, 5000, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, toy_2d(name, 5000, torch.Generator().manual_seed(4)))


def test_eight_gaussians_match_the_exposed_mixture():
    means, std = gaussian_mixture_8()
    assert means.shape == (8, 2)
    radii = means.norm(dim=1)
    assert torch.allclose(radii, radii[0])
    x = toy_2d("8gaussians", 20000, torch.Generator().manual_seed(0))
    dist, mode = (x[:, None] - means).norm(dim=-1).min(1)
    # P(|z| < 3 sigma) for a 2-D isotropic Gaussian is 1 - exp(-4.5) = 0.989.
    assert abs((dist < 3 * std).double().mean().item() - (1 - np.exp(-4.5))) < 0.005
    assert torch.all((torch.bincount(mode, minlength=8) / 20000 - 1 / 8).abs() < 0.01)


def test_checkerboard_points_lie_on_one_colour():
    x = toy_2d("checkerboard", 5000, torch.Generator().manual_seed(0))
    cells = torch.floor(2 * x).long().sum(1)
    assert torch.all(cells % 2 == 0)


def test_toy_errors():
    with pytest.raises(ValueError, match="name"):
        toy_2d("spirals", 10)
    with pytest.raises(ValueError, match="n must"):
        toy_2d("moons", 0)


def test_load_dataset_dispatch():
    assert torch.equal(load_dataset("digits", "test"), load_digits_split("test"))
    train = load_dataset("toy:moons", n=300)
    assert train.shape == (300, 2)
    assert torch.equal(train, load_dataset("toy:moons", n=300))
    assert not torch.equal(train, load_dataset("toy:moons", "test", n=300))
    assert load_dataset("toy:swissroll").shape == (20000, 2)
    with pytest.raises(ValueError, match="toy:checkerboard"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="keyword"):
        load_dataset("toy:moons", size=3)
    with pytest.raises(ValueError, match="keyword"):
        load_dataset("digits", n=3)
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "val")


def _save(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def test_image_folder_crops_converts_and_orders(tmp_path):
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (8, 12, 3))  # h = 8, w = 12: the centre crop keeps columns 2..9
    _save(tmp_path / "a.png", wide)
    _save(tmp_path / "b.jpg", np.full((16, 16, 3), (255, 0, 0)))
    _save(tmp_path / "sub" / "c.webp", np.zeros((10, 10, 3)))
    (tmp_path / "notes.txt").write_text("not an image")

    x = load_image_folder(tmp_path, image_size=8)
    assert x.shape == (3, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    expected = torch.from_numpy(wide[:, 2:10].transpose(2, 0, 1) / 127.5 - 1).float()
    assert torch.allclose(x[0], expected, atol=1e-6)
    assert torch.allclose(x[2], torch.tensor(-1.0), atol=1e-6)
    assert torch.allclose(x[1, 0], torch.tensor(1.0), atol=0.05)  # red, up to jpeg error
    assert torch.allclose(x[1, 1:], torch.tensor(-1.0), atol=0.05)

    grey = load_image_folder(tmp_path, image_size=4, channels=1, limit=2)
    assert grey.shape == (2, 1, 4, 4)
    # ITU-R 601-2 luma of pure red: 255 * 299 / 1000 = 76.
    assert torch.allclose(grey[1], torch.tensor(76 / 127.5 - 1), atol=0.05)
    train = load_dataset("folder", path=tmp_path, image_size=8, test_fraction=0.3)
    test = load_dataset("folder", "test", path=tmp_path, image_size=8, test_fraction=0.3)
    assert len(train) == 2 and len(test) == 1
    assert any(torch.equal(test[0], row) for row in x)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_image_folder(tmp_path / "missing", 8)
    with pytest.raises(ValueError, match="no images"):
        load_image_folder(tmp_path, 8)
    _save(tmp_path / "a.png", np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="channels"):
        load_image_folder(tmp_path, 8, channels=2)
    with pytest.raises(ValueError, match="limit"):
        load_image_folder(tmp_path, 8, limit=0)
    with pytest.raises(ValueError, match="too few"):
        load_dataset("folder", "test", path=tmp_path, image_size=8)
    _save(tmp_path / "b.png", np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="test_fraction"):
        folder_split_files(tmp_path, "train", test_fraction=1.0)
    with pytest.raises(ValueError, match="max_images"):
        folder_split_files(tmp_path, "train", max_images=-1)
    with pytest.raises(ValueError, match="split"):
        folder_split_files(tmp_path, "validation")


def test_folder_split_is_a_fixed_partition_of_the_first_max_images(tmp_path):
    for i in range(30):
        _save(tmp_path / f"{i:02d}.png", np.full((4, 4, 3), i))
    names = {s: [f.name for f in folder_split_files(tmp_path, s, 0.2)] for s in ("train", "test")}
    assert len(names["test"]) == 6 and len(names["train"]) == 24
    assert sorted(names["train"] + names["test"]) == [f"{i:02d}.png" for i in range(30)]
    assert names["test"] == sorted(names["test"])
    assert names["test"] == [f.name for f in folder_split_files(tmp_path, "test", 0.2)]
    first = {s: folder_split_files(tmp_path, s, 0.2, max_images=10) for s in ("train", "test")}
    assert len(first["test"]) == 2 and len(first["train"]) == 8
    first_ten = [f"{i:02d}.png" for i in range(10)]
    assert sorted(f.name for f in first["train"] + first["test"]) == first_ten
    x = load_folder_split(tmp_path, "test", image_size=4, test_fraction=0.2)
    levels = sorted(round(float(v)) for v in (x[:, 0, 0, 0] + 1) * 127.5)
    assert levels == sorted(int(n[:2]) for n in names["test"])


def test_folder_data_without_a_path_is_an_error_not_the_working_directory():
    with pytest.raises(ValueError, match="needs data.path"):
        dataset_from_config(load("paper"))
