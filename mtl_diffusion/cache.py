"""Results cached on disk, keyed by the config, its inputs and the code version; written
atomically.

The key holds everything a result depends on: the full config, the experiment name and extra
arguments, the package's source (any edit recomputes), the versions of the libraries that change
numbers, and the inputs a config names by path: an image folder's files (relative path, size and
modification time of each) and the feature network's bytes. Run folders (checkpoints) use the
same key without the source hash, so a code edit never orphans a resumable run (the trainer
asks what to do instead). A full or read-only disk is reported before the work; a result that
cannot be written is returned with a warning, never discarded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import torch

from mtl_diffusion.config import Config
from mtl_diffusion.data import IMAGE_SUFFIXES
from mtl_diffusion.paths import artifacts_dir

T = TypeVar("T")
PACKAGE = Path(__file__).resolve().parent
NUMERIC_LIBRARIES = ("torch", "numpy", "scipy", "scikit-learn", "pillow")
STALE_SECONDS = 600  # a temporary file this old belongs to a killed writer


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """`write(handle)` into a temporary file beside `path`, then rename: never a half-written
    file (a failed write leaves the previous file, if any, in place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save `obj` to `path` atomically (see atomic_write)."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


@cache
def code_version() -> str:
    """Hash of every source file of the package: editing the core invalidates cached results."""
    digest = hashlib.sha256()
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(source.relative_to(PACKAGE).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose releases can change the numbers."""
    versions = {}
    for name in NUMERIC_LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    return versions


def folder_fingerprint(path: str) -> str:
    """Hash of (relative path, size, modification time) of every image file under `path`."""
    root = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    for file in files:
        stat = file.stat()
        digest.update(
            f"{file.relative_to(root).as_posix()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()[:16]


@lru_cache(maxsize=8)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def file_hash(path: str) -> str:
    """Hash of a file's bytes (computed once per size and modification time)."""
    stat = Path(path).stat()
    return _file_hash(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def inputs_fingerprint(config: Config) -> dict[str, Any]:
    """What a config names by path, by content, and the numeric libraries' versions."""
    inputs: dict[str, Any] = {"libraries": library_versions()}
    if config.data.name == "folder" and config.data.path and Path(config.data.path).is_dir():
        inputs["data"] = folder_fingerprint(config.data.path)
    if config.eval.feature_net and Path(config.eval.feature_net).is_file():
        inputs["feature_net"] = file_hash(config.eval.feature_net)
    return inputs


def cache_key(config: Config, name: str, extra: Any = None, *, code: bool = True) -> str:
    """Hash of the experiment name, the full config, any extra inputs, the inputs the config
    names by path and (unless `code` is False: run folders) the code version."""
    parts = [name, config.to_dict(), extra, inputs_fingerprint(config)]
    if code:
        parts.append(code_version())
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_writable(folder: Path) -> None:
    """Raise OSError, saying what to do, unless a file can be written in `folder`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
        try:
            with os.fdopen(fd, "wb") as handle:  # real bytes: a full disk refuses them
                handle.write(b"\0" * 65536)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            Path(probe).unlink(missing_ok=True)
    except OSError as error:
        raise OSError(
            f"cannot write in {folder} ({error.strerror or error}): free disk space or set "
            "MTL_DIFFUSION_ARTIFACTS to a writable folder before running"
        ) from error


def remove_stale_temporaries(folder: Path, name: str) -> None:
    """Delete temporary files of atomic_save(..., folder / name) left by a killed writer."""
    now = time.time()
    for tmp in folder.glob(f".{name}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_SECONDS:
                tmp.unlink()
        except OSError:
            pass  # another process removed or renamed it


def cache_path(config: Config, name: str, extra: Any = None) -> Path:
    """Where the result of `name` under `config` is stored."""
    return artifacts_dir(config.profile) / "cache" / f"{name}-{cache_key(config, name, extra)}.pt"


def load_or_compute(
    config: Config, fn: Callable[[], T], *, name: str, extra: Any = None, store: bool = True
) -> T:
    """Return the cached result of fn() for this config, computing and storing it if absent.

    A corrupt or unreadable entry is recomputed with a warning, never silently trusted.
    `store=False` computes without writing (the ranks of a torchrun job other than rank 0).
    """
    path = cache_path(config, name, extra)
    found, result = _load(path)
    if found:
        return result
    if not store:
        return fn()
    check_writable(path.parent)
    with _exclusive(path):  # another process computing this entry: wait, then load its result
        found, result = _load(path)
        if found:
            return result
        remove_stale_temporaries(path.parent, path.name)
        result = fn()
        try:
            atomic_save(result, path)
        except OSError as error:
            warnings.warn(
                f"could not write the result to {path} ({error}); it is returned but not cached",
                stacklevel=3,
            )
    return result


def _load(path: Path) -> tuple[bool, Any]:
    """(True, the entry) if `path` holds a readable entry; (False, None) otherwise, with a
    warning for an unreadable one (it is recomputed, never trusted)."""
    if not path.exists():
        return False, None
    try:
        return True, torch.load(path, weights_only=False)
    except Exception as error:  # any unpickling failure means the entry is unusable
        warnings.warn(f"cache entry {path} is unreadable ({error!r}); recomputing", stacklevel=3)
        return False, None


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`'s lock file (beside it; left in place, since removing a
    lock file races with its next holder) for as long as the block runs."""
    with open(path.parent / f".{path.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
