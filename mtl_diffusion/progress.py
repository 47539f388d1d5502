"""Progress bars that stay quiet under CI and in non-interactive runs; plain text (not a Jupyter
widget), so that an executed notebook keeps readable progress lines."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def quiet() -> bool:
    """True under CI or when MTL_DIFFUSION_QUIET is set: no progress bars then."""
    return bool(os.environ.get("CI")) or bool(os.environ.get("MTL_DIFFUSION_QUIET"))


def progress(iterable: Iterable[T], **kwargs) -> Iterable[T]:
    """Wrap an iterable in a tqdm bar unless quiet() says otherwise."""
    kwargs.setdefault("disable", quiet())
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
