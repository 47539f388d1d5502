"""Sample metrics of generated images: digits and image folders, pixel and network features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mtl_diffusion.builders import dataset_from_config
from mtl_diffusion.config import load
from mtl_diffusion.data import load_digits_split
from mtl_diffusion.evaluation import (
    distances,
    evaluate,
    feature_label,
    load_feature_network,
    pixel_embedding,
    pixel_label,
    real_floor,
    reference_embeddings,
)
from mtl_diffusion.example_folder import write_example_folder
from mtl_diffusion.features import digit_features
from mtl_diffusion.metrics import frechet_distance


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    return str(write_example_folder(tmp_path_factory.mktemp("images") / "digits", 120, 32))


def _folder_config(path: str, **overrides):
    size = {"data.image_size": 16, "data.test_fraction": 0.25, "eval.pixel_size": 8}
    return load("paper", {"data.path": path, **size, **overrides})


def test_digits_metrics_against_the_held_out_split():
    cfg = load("cpu")
    test = load_digits_split("test")
    same = evaluate(test, cfg)
    assert set(same) == {"fd", "fd_pixel", "kid", "kid_std", "precision", "recall"}
    assert abs(same["fd"]) < 1e-6 and abs(same["fd_pixel"]) < 1e-6
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    noise = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real, fake = evaluate(load_digits_split("train"), cfg), evaluate(noise, cfg)
    assert real["fd"] < 1.0  # held-out real digits: small, but not 0 (finite samples)
    for key in ("fd", "fd_pixel", "kid"):
        assert fake[key] > 20 * real[key]
    assert real["precision"] > 0.8 and fake["precision"] < real["precision"] / 2
    # independent paths: the classifier's features and the 64 raw pixels
    train = load_digits_split("train")
    expected = frechet_distance(digit_features(test), digit_features(train))
    assert distances(train, cfg)["fd"] == pytest.approx(expected, rel=1e-9)
    pixels = frechet_distance(test.flatten(1).double().numpy(), train.flatten(1).double().numpy())
    assert distances(train, cfg)["fd_pixel"] == pytest.approx(pixels, rel=1e-9)
    assert (feature_label(cfg), pixel_label(cfg)) == ("classifier-feature", "pixel")
    with pytest.raises(ValueError, match="split"):
        evaluate(test, cfg, split="val")


def test_pixel_embedding_is_block_averaging_when_larger():
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    blocks = x.double().reshape(5, 3, 8, 2, 8, 2).mean(dim=(3, 5))
    np.testing.assert_allclose(pixel_embedding(8)(x), blocks.flatten(1).numpy(), atol=1e-12)
    np.testing.assert_array_equal(pixel_embedding(32)(x * 2), (x * 2).clamp(-1, 1).flatten(1))


def test_folder_without_a_network_uses_downsampled_pixels(folder):
    cfg = _folder_config(folder)
    real, fake = reference_embeddings(cfg)
    assert real.shape == (30, 3 * 8 * 8) and fake.shape == real.shape
    samples = torch.rand(40, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    result = evaluate(samples, cfg)
    assert result["fd"] == pytest.approx(result["fd_pixel"], rel=1e-12)
    assert (feature_label(cfg), pixel_label(cfg)) == ("8x8-pixel", "8x8-pixel")


class _Features(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


@pytest.mark.parametrize("kind", ["export", "torchscript"])
def test_folder_with_a_saved_feature_network(folder, tmp_path, kind):
    torch.manual_seed(0)
    net = _Features().eval()
    example = torch.zeros(4, 3, 16, 16)
    if kind == "export":
        batch = torch.export.Dim("batch")
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
        path = tmp_path / "features.pt2"
        torch.export.save(program, str(path))
    else:
        path = tmp_path / "features.pt"
        with pytest.warns(DeprecationWarning):
            torch.jit.script(net).save(str(path))
    cfg = _folder_config(folder, **{"eval.feature_net": str(path)})
    samples = torch.rand(300, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    test_images = dataset_from_config(_folder_config(folder), "test")
    with torch.no_grad():
        real, fake = (net(x).double().numpy() for x in (test_images, samples))
    expected = frechet_distance(real, fake)
    assert distances(samples, cfg)["fd"] == pytest.approx(expected, rel=1e-6)
    assert feature_label(cfg) == "features-feature"


def test_evaluation_errors(folder, tmp_path):
    with pytest.raises(ValueError, match="data.name"):
        evaluate(torch.zeros(4, 2), load("cpu", {"data.name": "toy:moons"}))
    missing = _folder_config(folder, **{"eval.feature_net": str(tmp_path / "none.pt2")})
    with pytest.raises(ValueError, match="eval.feature_net"):
        distances(torch.zeros(8, 3, 16, 16), missing)
    flat = tmp_path / "flat.pt2"
    program = torch.export.export(
        nn.Flatten(0), (torch.zeros(4, 3, 16, 16),), dynamic_shapes=({0: torch.export.Dim("b")},)
    )
    torch.export.save(program, str(flat))
    wrong = _folder_config(folder, **{"eval.feature_net": str(flat)})
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        distances(torch.zeros(8, 3, 16, 16), wrong)


@pytest.mark.parametrize("device", ["meta", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))])  # fmt: skip
def test_the_feature_network_runs_on_the_training_device(tmp_path, device: str) -> None:
    net = _Features().eval()
    program = torch.export.export(net, (torch.zeros(4, 3, 16, 16),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))  # fmt: skip
    path = tmp_path / "features.pt2"
    torch.export.save(program, str(path))
    moved = load_feature_network(
        str(path), device
    )  # "meta": a device without memory, no GPU needed
    assert all(p.device.type == device for p in moved.parameters())
    assert moved(torch.zeros(2, 3, 16, 16, device=device)).device.type == device


def test_real_floor_is_the_distance_of_training_images() -> None:
    cfg = load("smoke")
    images = dataset_from_config(cfg, "train")
    subset = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:100]
    assert real_floor(cfg, 100) == distances(images[subset], cfg)
    assert real_floor(cfg, 100) != distances(images[:100], cfg)  # not the split's first images
    with pytest.raises(ValueError, match="training split"):
        real_floor(cfg, 10**6)
