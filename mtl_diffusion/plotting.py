"""One plotting style and one savefig for every notebook."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from mtl_diffusion import notebook
from mtl_diffusion.paths import figures_dir


def set_style() -> None:
    """The house style: seaborn whitegrid, readable fonts."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130, "axes.titlesize": "medium"})


def savefig(fig: plt.Figure, name: str, profile: str) -> Path:
    """Save `fig` as PNG in the figures folder of this notebook's run (see
    mtl_diffusion.notebook), or build/figures/<profile> outside a notebook run."""
    run = notebook.CURRENT
    folder = run.figures if run is not None and run.profile == profile else figures_dir(profile)
    path = folder / f"{name}.png"
    fig.savefig(path, bbox_inches="tight")
    return path


def image_grid(
    images: torch.Tensor, nrow: int = 10, pad: int = 1, pad_value: float = 0.15
) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1] into one (H', W') or (H', W', 3) array in [0, 1]."""
    images = images.detach().float().clamp(-1, 1).add(1).div(2).cpu()
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    grid = torch.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    array = grid.permute(1, 2, 0).numpy()
    return array[..., 0] if c == 1 else array


def show_images(ax: plt.Axes, images: torch.Tensor, nrow: int = 10, title: str = "") -> None:
    """Draw an image grid on `ax` without ticks."""
    grid = image_grid(images, nrow)
    ax.imshow(grid, cmap="gray_r" if grid.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
