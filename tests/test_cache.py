"""load_or_compute: computes once, reloads, recomputes on config/code change or corruption."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtl_diffusion import cache, paths
from mtl_diffusion.config import load


@pytest.fixture(autouse=True)
def isolated_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path)
    return tmp_path


def counting(value: object) -> tuple[list[int], object]:
    calls: list[int] = []

    def fn() -> object:
        calls.append(1)
        return value

    return calls, fn


def test_computes_once_then_loads() -> None:
    cfg = load("smoke")
    calls, fn = counting({"fd": 1.5})
    assert cache.load_or_compute(cfg, fn, name="x") == {"fd": 1.5}
    assert cache.load_or_compute(cfg, fn, name="x") == {"fd": 1.5}
    assert len(calls) == 1


def test_config_name_and_extra_change_the_key() -> None:
    cfg = load("smoke")
    calls, fn = counting(3)
    cache.load_or_compute(cfg, fn, name="x")
    cache.load_or_compute(load("smoke", seed=1), fn, name="x")
    cache.load_or_compute(cfg, fn, name="y")
    cache.load_or_compute(cfg, fn, name="x", extra=[1, 2])
    assert len(calls) == 4


def test_code_version_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load("smoke")
    before = cache.cache_key(cfg, "x")
    monkeypatch.setattr(cache, "code_version", lambda: "another-version")
    assert cache.cache_key(cfg, "x") != before


def test_corrupt_entry_is_recomputed_with_warning() -> None:
    cfg = load("smoke")
    calls, fn = counting([1, 2, 3])
    cache.load_or_compute(cfg, fn, name="x")
    cache.cache_path(cfg, "x").write_bytes(b"not a pickle")
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.load_or_compute(cfg, fn, name="x") == [1, 2, 3]
    assert len(calls) == 2
    assert cache.load_or_compute(cfg, fn, name="x") == [1, 2, 3]
    assert len(calls) == 2


def test_profiles_write_to_separate_folders() -> None:
    smoke, cpu = cache.cache_path(load("smoke"), "x"), cache.cache_path(load("cpu"), "x")
    assert smoke.parent != cpu.parent
    assert "smoke" in smoke.parts and "cpu" in cpu.parts


def test_atomic_save_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "obj.pt"

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.atomic_save({"bad": Unpicklable()}, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    cache.atomic_save({"ok": 1}, target)
    assert [p.name for p in target.parent.iterdir()] == ["obj.pt"]


COMPUTE_SLOWLY = """
import sys, time
from pathlib import Path
from mtl_diffusion.cache import load_or_compute
from mtl_diffusion.config import load

def compute():
    with open(sys.argv[1], "a") as log:
        log.write("computed\\n")
    time.sleep(1.5)
    return 42

print(load_or_compute(load("smoke"), compute, name="shared"))
"""


def test_two_processes_wanting_one_entry_compute_it_once(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    env = {**os.environ, "MTL_DIFFUSION_ARTIFACTS": str(tmp_path / "art"), "OMP_NUM_THREADS": "1"}
    jobs = [subprocess.Popen([sys.executable, "-c", COMPUTE_SLOWLY, str(log)], env=env,
                             stdout=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outputs = [job.communicate(timeout=120)[0].strip() for job in jobs]
    assert outputs == ["42", "42"] and log.read_text() == "computed\n"  # the other one waited
