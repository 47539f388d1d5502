"""Results cached on disk, keyed by the config and the code version; written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import torch

from mtl_diffusion.config import Config
from mtl_diffusion.paths import artifacts_dir

T = TypeVar("T")
PACKAGE = Path(__file__).resolve().parent


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@cache
def code_version() -> str:
    """Hash of every source file of the package: editing the core invalidates cached results."""
    digest = hashlib.sha256()
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(source.relative_to(PACKAGE).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(config: Config, name: str, extra: Any = None) -> str:
    """Hash of the experiment name, the full config, any extra inputs and the code version."""
    text = json.dumps([name, config.to_dict(), extra, code_version()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(config: Config, name: str, extra: Any = None) -> Path:
    """Where the result of `name` under `config` is stored."""
    return artifacts_dir(config.profile) / "cache" / f"{name}-{cache_key(config, name, extra)}.pt"


def load_or_compute(config: Config, fn: Callable[[], T], *, name: str, extra: Any = None) -> T:
    """Return the cached result of fn() for this config, computing and storing it if absent.

    A corrupt or unreadable entry is recomputed with a warning, never silently trusted.
    """
    path = cache_path(config, name, extra)
    if path.exists():
        try:
            return torch.load(path, weights_only=False)
        except Exception as error:  # any unpickling failure means the entry is unusable
            warnings.warn(
                f"cache entry {path} is unreadable ({error!r}); recomputing", stacklevel=2
            )
    result = fn()
    atomic_save(result, path)
    return result
