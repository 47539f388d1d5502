"""The notebook runner: selecting notebooks, recording runtimes, reporting every failure."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from mtl_diffusion import run_notebooks
from mtl_diffusion.cache import cache_key
from mtl_diffusion.calibration import calibration_config
from mtl_diffusion.config import load
from mtl_diffusion.run_notebooks import sources


def test_selection_by_prefix_name_or_path() -> None:
    every = sources([])
    assert len(every) >= 8
    for selector in ("00", "quickstart", "notebooks/00_quickstart.py", "00_quickstart.ipynb"):
        assert [p.stem for p in sources([selector])] == ["00_quickstart"], selector


def test_unknown_selection_lists_the_notebooks() -> None:
    with pytest.raises(SystemExit, match="available: .*00_quickstart"):
        sources(["no_such_notebook"])


def fake_run_one(source: Path, profile: str, params: dict, prepare_only: bool) -> float:
    """Stands in for papermill: the clustering notebook fails, the others take 1 s."""
    if "clustering" in source.stem:
        raise ValueError("cell failed")
    return 1.0


@pytest.mark.parametrize(
    "jobs",
    [
        1,  # in this process
        pytest.param(
            2,  # worker processes see the fake only when forked
            marks=pytest.mark.skipif(
                multiprocessing.get_start_method() != "fork", reason="needs forked workers"
            ),
        ),
    ],
)
def test_a_failure_keeps_the_other_runtimes_and_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    monkeypatch.setattr(run_notebooks, "run_one", fake_run_one)
    monkeypatch.setattr(run_notebooks, "BUILD", tmp_path)
    with pytest.raises(
        SystemExit,
        match=r"(?s)1 notebook\(s\) failed.*03_interval_clustering: ValueError: cell failed",
    ):
        run_notebooks.run("cpu", ["00", "03"], {}, prepare_only=False, jobs=jobs)
    runtimes = json.loads((tmp_path / "notebooks" / "cpu" / "runtimes.json").read_text())
    assert runtimes == {"00_quickstart": 1.0}


def test_the_monitor_reports_the_running_notebooks_cells(tmp_path: Path, capsys) -> None:
    import time

    from mtl_diffusion.notebook_progress import Monitor, cell_progress

    def cell(status: str) -> dict:
        return {"cell_type": "code", "metadata": {"papermill": {"status": status}}}

    path = tmp_path / "02_negative_transfer.ipynb"
    path.write_text(json.dumps({"cells": [cell("pending")] * 3}))
    assert cell_progress(path) is None  # queued, not started
    running = [cell("completed"), cell("running"), cell("pending")]
    path.write_text(json.dumps({"cells": [*running, {"cell_type": "markdown"}]}))
    assert cell_progress(path) == (1, 3)
    monitor = Monitor({"02_negative_transfer": path, "04_ant_training": tmp_path / "no"},
                      {"02_negative_transfer": 1800.0}, every=0.05)  # fmt: skip
    monitor.start()
    time.sleep(0.3)
    path.touch()
    time.sleep(0.3)
    monitor.stop()
    monitor.join()
    lines = capsys.readouterr().out.splitlines()
    assert lines and all("04_ant" not in line for line in lines)
    assert "02_negative_transfer: 1 of 3 cells done, 0 min in (30 min last time)" in lines[-1]


def test_the_shared_calibration_run_is_the_one_the_notebooks_load() -> None:
    calibration_notebooks = sources(["02", "04", "05", "06"])
    first = run_notebooks.calibration_first(calibration_notebooks, "cpu", {}, False)
    # what notebook 04 builds its calibration run from: the profile and its own cpu scale
    notebook_04 = load("cpu", {"train.steps": 400, "train.eval_every": 40})
    assert cache_key(calibration_config(first), "calibration") == cache_key(
        calibration_config(notebook_04), "calibration"
    )
    wider = {"config_overrides": "model.base_channels=16"}
    first = run_notebooks.calibration_first(calibration_notebooks, "cpu", wider, False)
    assert first.model.base_channels == 16
    assert run_notebooks.calibration_first(calibration_notebooks, "cpu", {}, True) is None
    assert run_notebooks.calibration_first(sources(["00", "04"]), "cpu", {}, False) is None
    assert run_notebooks.calibration_first(calibration_notebooks, "paper", {}, False) is None


def fake_train_calibration(base) -> float:
    """Stands in for the calibration run: marks the file named by FAKE_CALIBRATION_MARK."""
    Path(os.environ["FAKE_CALIBRATION_MARK"]).write_text(base.profile)
    return 1.0


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="needs forked workers")
def test_several_jobs_train_the_calibration_run_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_notebooks, "run_one", fake_run_one)
    monkeypatch.setattr(run_notebooks, "BUILD", tmp_path)
    monkeypatch.setattr(run_notebooks, "train_calibration", fake_train_calibration)
    monkeypatch.setenv("FAKE_CALIBRATION_MARK", str(tmp_path / "trained"))
    run_notebooks.run("cpu", ["00", "02", "04"], {}, prepare_only=False, jobs=2)
    assert (tmp_path / "trained").read_text() == "cpu"


def fake_train_arms(configs) -> float:
    """Stands in for the shared vanilla arm: writes its seeds to FAKE_ARMS_MARK."""
    Path(os.environ["FAKE_ARMS_MARK"]).write_text(",".join(str(c.seed) for c in configs))
    return 1.0


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="needs forked workers")
def test_several_jobs_train_the_shared_vanilla_arm_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_notebooks, "run_one", fake_run_one)
    monkeypatch.setattr(run_notebooks, "BUILD", tmp_path)
    monkeypatch.setattr(run_notebooks, "train_calibration", fake_train_calibration)
    monkeypatch.setattr(run_notebooks, "train_arms", fake_train_arms)
    monkeypatch.setenv("FAKE_CALIBRATION_MARK", str(tmp_path / "calibration"))
    monkeypatch.setenv("FAKE_ARMS_MARK", str(tmp_path / "arms"))
    run_notebooks.run("cpu", ["00", "04", "05"], {}, prepare_only=False, jobs=2)
    assert (tmp_path / "arms").read_text() == "0,1,2"
    (tmp_path / "arms").unlink()
    run_notebooks.run("cpu", ["04", "05"], {"seed": 3}, prepare_only=False, jobs=2)
    assert not (tmp_path / "arms").exists()  # another seed: the notebooks train their own


def notebook_namespace(stem: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Execute a notebook's code cells under cpu with default parameters up to the one that
    defines `configs` (nothing trains before it), with notebook.start stubbed out."""
    import jupytext

    from mtl_diffusion import notebook

    monkeypatch.setattr(notebook, "start", lambda name, namespace: None)
    cells = [c for c in jupytext.read(f"notebooks/{stem}.py").cells if c.cell_type == "code"]
    namespace: dict = {}
    for cell in cells:
        assert "train_many(" not in cell.source and "calibration_run(base)" not in cell.source
        exec(cell.source, namespace)
        if "configs" in namespace:
            return namespace
    raise AssertionError(f"{stem} defines no `configs`")


def test_the_vanilla_arm_trained_first_is_the_one_notebooks_04_to_06_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The vanilla arm run() trains first has the cache keys of the configs each of 04, 05 and
    06 builds (their header cells, executed), so they load it instead of training it again."""
    monkeypatch.chdir(Path(__file__).parents[1])
    arm = run_notebooks.vanilla_arm_first(sources(["04", "05", "06"]), "cpu", {}, False)
    expected = [cache_key(c, run_notebooks.ARMS) for c in arm]
    assert len(expected) == 3
    pick = {
        "04_ant_training": lambda ns: [ns["configs"]["vanilla", s] for s in ns["seeds"]],
        "05_task_routing": lambda ns: [ns["configs"]["unet", "vanilla", s] for s in ns["seeds"]],
        "06_curriculum": lambda ns: ns["configs"]["uniform"],
    }
    for stem, vanilla in pick.items():
        namespace = notebook_namespace(stem, monkeypatch)
        assert [cache_key(c, run_notebooks.ARMS) for c in vanilla(namespace)] == expected, stem
    first = run_notebooks.vanilla_arm_first
    assert first(sources(["04", "05"]), "cpu", {"steps": 800}, False) == []
    assert first(sources(["04", "05"]), "cpu", {}, True) == []
    assert first(sources(["04", "07"]), "cpu", {}, False) == []
    assert first(sources(["04", "05"]), "paper", {}, False) == []
