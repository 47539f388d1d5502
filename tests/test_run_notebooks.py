"""The notebook runner: selecting notebooks, recording runtimes, reporting every failure."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from mtl_diffusion import run_notebooks
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
