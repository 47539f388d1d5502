"""One plotting style and one savefig for every notebook, and the legend keys and axis labels
that say what every line, band, marker and colour of a figure is."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.artist import Artist
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

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


# --- labels and legend keys: every line, band, marker and colour says what it is -------------


def lower_is_better(label: str) -> str:
    """An axis label for a distance or an error: `label` + " (lower is better)"."""
    return f"{label} (lower is better)"


def higher_is_better(label: str) -> str:
    """An axis label for a score such as an accuracy: `label` + " (higher is better)"."""
    return f"{label} (higher is better)"


def cluster_label(index: int, interval: tuple[int, int]) -> str:
    """Legend text of cluster `index` (0-based) over the inclusive timesteps `interval`:
    ``cluster_label(1, (200, 399)) == "cluster 2: t 200-399"``."""
    start, end = interval
    return f"cluster {index + 1}: t {start}-{end}"


def line_key(
    label: str,
    *,
    color: object = "k",
    ls: str = "-",
    lw: float = 1.5,
    marker: str = "None",
    ms: float = 5.0,
    alpha: float = 1.0,
) -> Line2D:
    """A legend entry for a line or a marker that is drawn without a label (marker only:
    ``ls="None"``)."""
    return Line2D([], [], color=color, ls=ls, lw=lw, marker=marker, ms=ms, alpha=alpha, label=label)


def patch_key(
    label: str,
    *,
    color: object = "grey",
    alpha: float = 1.0,
    edgecolor: object = "none",
    fill: bool = True,
) -> Patch:
    """A legend entry for a filled area: a band, a bar colour or a mask value."""
    return Patch(facecolor=color if fill else "none", alpha=alpha, edgecolor=edgecolor, label=label)


def errorbar_key(label: str = "error bar: ± 1 sd over seeds", color: object = "k") -> Line2D:
    """A legend entry for the error bars drawn by ``ax.bar(..., yerr=...)``."""
    return Line2D([], [], color=color, ls="None", marker="|", ms=12, mew=1.2, label=label)


def seed_dots_key(label: str = "dots: single seeds", ms: float = 4.0) -> Line2D:
    """A legend entry for the black dots that mark the individual seeds."""
    return line_key(label, ls="None", marker="o", ms=ms)


def interval_keys(num: int, noun: str = "cluster") -> list[Patch]:
    """Legend entries for segments coloured C0, C1, ... by their position from low t."""
    keys = [patch_key(f"{noun} {i + 1}", color=f"C{i % 10}") for i in range(num)]
    keys[0].set_label(f"{noun} 1 (lowest t)")
    if num > 1:
        keys[-1].set_label(f"{noun} {num} (highest t)")
    return keys


def legend(ax: plt.Axes, *keys: Artist, **kwargs: object) -> Legend:
    """``ax.legend`` with the axes' own labelled artists followed by the proxy `keys`."""
    handles, _ = ax.get_legend_handles_labels()
    return ax.legend(handles=[*handles, *keys], **kwargs)
