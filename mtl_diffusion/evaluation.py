"""Sample quality against the held-out split of the configured image data.

    metrics = evaluate(samples, config)     # fd, fd_pixel, kid, kid_std, precision, recall
    f"{feature_label(config)} FD"           # what "fd" was computed on, for axis labels

Two spaces, chosen by the data:

- features (fd, kid, precision, recall): the bundled digits classifier for the digits; for an
  image folder the network in ``eval.feature_net`` (a ``torch.export`` program saved as .pt2,
  or a TorchScript file, mapping (N, C, H, W) images in [-1, 1] to (N, d) features: an Inception
  you exported yourself, since nothing is downloaded), else the pixel space below, so that fd
  equals fd_pixel and the labels say so;
- pixels (fd_pixel): the images, area-downsampled to ``eval.pixel_size`` per side when larger
  (the 8x8 digits keep their 64 pixels).

Features run on the CPU in batches; the reference features of a split are computed once per
process.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.export.passes import move_to_device_pass

from mtl_diffusion.builders import dataset_from_config
from mtl_diffusion.config import Config, DataConfig, EvalConfig
from mtl_diffusion.data import SPLITS
from mtl_diffusion.features import digit_features
from mtl_diffusion.metrics import KID_SUBSET_SIZE, frechet_distance, kid, precision_recall

Embedding = Callable[[torch.Tensor], np.ndarray]
FEATURE_BATCH = 256


def _check_images(config: Config) -> None:
    if config.data.name not in ("digits", "folder"):
        raise ValueError(
            f"sample metrics need image data (data.name digits or folder), got {config.data.name!r}"
        )


def _pixel_side(config: Config) -> int:
    return min(config.data.image_size, config.eval.pixel_size)


def pixel_embedding(side: int) -> Embedding:
    """Images (N, C, H, W), clamped to [-1, 1] and area-downsampled to side x side when larger,
    flattened to float64 (N, C * side^2)."""

    def embed(images: torch.Tensor) -> np.ndarray:
        x = images.detach().to("cpu", torch.float64).clamp(-1.0, 1.0)
        if x.shape[-1] > side or x.shape[-2] > side:
            x = F.adaptive_avg_pool2d(x, side)
        return x.flatten(1).numpy()

    return embed


@lru_cache(maxsize=2)
def load_feature_network(path: str, device: str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """The network saved at `path` (torch.export .pt2 or TorchScript) on `device`, cached."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(
            f"eval.feature_net must be a .pt2 (torch.export) or TorchScript file, got {path!r}: "
            "no such file"
        )
    if file.suffix == ".pt2":
        return move_to_device_pass(torch.export.load(str(file)), device).module()
    return torch.jit.load(str(file), map_location=device).eval()


def network_embedding(path: str, device: str = "cpu") -> Embedding:
    """Features (N, d) float64 of the saved network at ``path``, in batches of FEATURE_BATCH
    on `device` (feature_embedding: train.device where it exists, else the CPU)."""

    @torch.no_grad()
    def embed(images: torch.Tensor) -> np.ndarray:
        net = load_feature_network(path, device)
        x = images.detach().to("cpu", torch.float32).clamp(-1.0, 1.0)
        feats = torch.cat([net(chunk.to(device)).cpu() for chunk in x.split(FEATURE_BATCH)])
        if feats.ndim != 2 or len(feats) != len(x):
            raise ValueError(
                f"eval.feature_net must map (N, C, H, W) to (N, d); {path!r} gave "
                f"{tuple(feats.shape)} for N = {len(x)}"
            )
        return feats.double().numpy()

    return embed


def feature_embedding(config: Config) -> Embedding:
    """The feature space of fd, kid, precision and recall for this config's data."""
    _check_images(config)
    if config.data.name == "digits":
        return digit_features
    if config.eval.feature_net:
        cuda = config.train.device == "cuda" and torch.cuda.is_available()
        return network_embedding(config.eval.feature_net, "cuda" if cuda else "cpu")
    return pixel_embedding(_pixel_side(config))


def feature_label(config: Config) -> str:
    """What "fd" is computed on, as an adjective: "classifier-feature", "<net>-feature" or
    "16x16-pixel"."""
    _check_images(config)
    if config.data.name == "digits":
        return "classifier-feature"
    if config.eval.feature_net:
        return f"{Path(config.eval.feature_net).stem}-feature"
    return pixel_label(config)


def pixel_label(config: Config) -> str:
    """What "fd_pixel" is computed on: "pixel", or "16x16-pixel" for downsampled images."""
    _check_images(config)
    side = _pixel_side(config)
    return "pixel" if config.data.name == "digits" else f"{side}x{side}-pixel"


@lru_cache(maxsize=4)
def _reference(
    data: DataConfig, feature_net: str, pixel_size: int, split: str
) -> tuple[np.ndarray, np.ndarray]:
    config = Config(data=data, eval=EvalConfig(feature_net=feature_net, pixel_size=pixel_size))
    images = dataset_from_config(config, split)
    return feature_embedding(config)(images), pixel_embedding(_pixel_side(config))(images)


def reference_embeddings(config: Config, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Features and pixels of the real images of ``split`` (computed once per process)."""
    _check_images(config)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return _reference(config.data, config.eval.feature_net, config.eval.pixel_size, split)


def check_ready(config: Config, split: str = "test") -> None:
    """Fail in seconds, not at the first evaluation: the split holds enough images for every
    metric (precision/recall with k = 3 neighbours need 4) and the feature network maps two
    real images to finite (2, d) features."""
    images = dataset_from_config(config, split)
    if len(images) < 4 or config.eval.num_samples < 4:
        raise ValueError(
            f"the sample metrics need at least 4 real and 4 generated images; the {split} split "
            f"of {config.data.name} has {len(images)}, eval.num_samples is "
            f"{config.eval.num_samples} (raise data.max_images / data.test_fraction or "
            "eval.num_samples)"
        )
    feats = feature_embedding(config)(images[:2])
    if feats.shape[0] != 2 or feats.ndim != 2 or not np.isfinite(feats).all():
        raise ValueError(
            f"the feature space of {config.data.name} must map 2 images to finite (2, d) "
            f"features, got shape {feats.shape}"
        )


def distances(samples: torch.Tensor, config: Config, split: str = "test") -> dict[str, float]:
    """Frechet distances of ``samples`` to the real ``split``: fd (features), fd_pixel."""
    ref_feats, ref_pixels = reference_embeddings(config, split)
    return {
        "fd": frechet_distance(ref_feats, feature_embedding(config)(samples)),
        "fd_pixel": frechet_distance(ref_pixels, pixel_embedding(_pixel_side(config))(samples)),
    }


def real_floor(config: Config, n: int | None = None) -> dict[str, float]:
    """The distances of `n` real training images (default eval.num_samples), a random subset
    drawn with a fixed generator (the split's order is not random: the digits' first images
    sit 2x further from the test split than a random subset), to the test split: the floor a
    perfect model reaches at that sample size (fd, fd_pixel)."""
    n = config.eval.num_samples if n is None else n
    images = dataset_from_config(config, "train")
    if not 2 <= n <= len(images):
        raise ValueError(f"n must be in [2, {len(images)}] (the training split), got {n}")
    subset = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:n]
    return distances(images[subset], config)


def evaluate(samples: torch.Tensor, config: Config, split: str = "test") -> dict[str, float]:
    """Every sample metric against the real ``split``.

    fd, fd_pixel: Frechet distances (see the module docstring for the spaces); kid, kid_std: KID
    on features (subsets of min(200, N, reference size)); precision, recall: k-NN (k = 3)
    manifolds on features.
    """
    ref_feats, ref_pixels = reference_embeddings(config, split)
    feats = feature_embedding(config)(samples)
    pixels = pixel_embedding(_pixel_side(config))(samples)
    kid_mean, kid_std = kid(
        ref_feats, feats, subset_size=min(KID_SUBSET_SIZE, len(feats), len(ref_feats))
    )
    precision, recall = precision_recall(ref_feats, feats)
    return {
        "fd": frechet_distance(ref_feats, feats),
        "fd_pixel": frechet_distance(ref_pixels, pixels),
        "kid": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
    }
