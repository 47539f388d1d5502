"""Feature network for offline evaluation: a small CNN classifier trained on the digits.

Trained once (train split, fixed seed, CPU, a few seconds), cached atomically as a state dict
under ARTIFACTS/feature_net with a hash of its hyper-parameters in the file name, then reused.
Its 128-d penultimate activations are the features of every digit metric; only numbers computed
with the same network (same hash) are comparable.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl_diffusion.data import load_digits_labels, load_digits_split
from mtl_diffusion.paths import ARTIFACTS

FEATURE_DIM = 128


@dataclass(frozen=True)
class FeatureNetConfig:
    """Hyper-parameters of the feature network; their hash names the cached weights.

    Bump ``version`` whenever the architecture or training code changes, so stale caches are
    never loaded.
    """

    version: int = 1
    channels: tuple[int, int] = (32, 64)
    feature_dim: int = FEATURE_DIM
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    max_shift: int = 1
    seed: int = 0

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


class DigitClassifier(nn.Module):
    """conv 3x3 -> conv 3x3 -> 2x2 max-pool -> fc (features) -> fc 10; no normalisation layers.

    ``feature_scale`` (a buffer, set after training) is the root-mean-square of the train split's
    penultimate activations, so that features are O(1) per dimension, as KID's kernel expects.
    """

    def __init__(self, channels: tuple[int, int] = (32, 64), feature_dim: int = FEATURE_DIM):
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc = nn.Linear(c2 * 16, feature_dim)
        self.head = nn.Linear(feature_dim, 10)
        self.register_buffer("feature_scale", torch.ones(()))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unscaled penultimate activations (N, feature_dim) of images (N, 1, 8, 8)."""
        h = F.relu(self.conv1(x))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc(h.flatten(1)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations divided by ``feature_scale``."""
        return self.embed(x) / self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def _random_shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels, filling with background (-1)."""
    if max_shift == 0:
        return x
    size = x.shape[-1]
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, len(x)), generator=g)
    rows = dy[:, None] + torch.arange(size)
    cols = dx[:, None] + torch.arange(size)
    batch = torch.arange(len(x))[:, None, None]
    return padded[:, 0][batch, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@torch.enable_grad()
def train_classifier(config: FeatureNetConfig) -> DigitClassifier:
    """Train on the digits train split; deterministic for ``config.seed`` (single thread)."""
    x, y = load_digits_split("train"), load_digits_labels("train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            model = DigitClassifier(config.channels, config.feature_dim)
        g = torch.Generator().manual_seed(config.seed)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        steps = config.epochs * -(-len(x) // config.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps)
        model.train()
        for _ in range(config.epochs):
            for idx in torch.randperm(len(x), generator=g).split(config.batch_size):
                logits = model(_random_shift(x[idx], config.max_shift, g))
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
        with torch.no_grad():
            model.feature_scale.copy_(model.embed(x).square().mean().sqrt())
    finally:
        torch.set_num_threads(threads)
    return model


def weights_path(config: FeatureNetConfig) -> Path:
    """Where the cached state dict of ``config`` lives."""
    return ARTIFACTS / "feature_net" / f"digits_cnn_{config.digest()}.pt"


def _save_atomic(state: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@lru_cache(maxsize=4)
def feature_network(config: FeatureNetConfig = FeatureNetConfig()) -> DigitClassifier:
    """The trained classifier in eval mode, frozen; loaded from the cache or trained and cached."""
    path = weights_path(config)
    if path.exists():
        model = DigitClassifier(config.channels, config.feature_dim)
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        model = train_classifier(config)
        _save_atomic(model.state_dict(), path)
    model.eval().requires_grad_(False)
    return model


def _check_digits(images: torch.Tensor) -> None:
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 8, 8) or len(images) == 0:
        raise ValueError(f"images must have shape (N, 1, 8, 8), N >= 1, got {tuple(images.shape)}")


@torch.no_grad()
def digit_features(images: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Penultimate features (N, 128) float64 of digit images (N, 1, 8, 8), clamped to [-1, 1]."""
    _check_digits(images)
    model = feature_network()
    x = images.detach().to("cpu", torch.float32).clamp(-1.0, 1.0)
    feats = [model.features(chunk) for chunk in x.split(batch_size)]
    return torch.cat(feats).double().numpy()


@torch.no_grad()
def classifier_accuracy(split: str = "test") -> float:
    """Fraction of the digits ``split`` the feature network classifies correctly."""
    logits = feature_network()(load_digits_split(split))
    return (logits.argmax(1) == load_digits_labels(split)).double().mean().item()
