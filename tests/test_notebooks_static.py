"""Every notebook source: one literal `parameters` cell papermill can read, and no downloads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jupytext
import papermill
import pytest

from mtl_diffusion.paths import NOTEBOOKS
from mtl_diffusion.run_notebooks import sources, to_ipynb

NOTEBOOK_SOURCES = sources([])
FORBIDDEN = re.compile(
    r"(urlopen|requests\.get|wget |curl |from_pretrained|load_state_dict_from_url|!pip|%pip)"
)


def test_there_are_notebooks() -> None:
    assert NOTEBOOK_SOURCES, f"no numbered notebooks in {NOTEBOOKS}"


@pytest.mark.parametrize("path", NOTEBOOK_SOURCES, ids=lambda p: p.stem)
def test_one_literal_parameters_cell(path: Path) -> None:
    code_cells = [c for c in jupytext.read(path).cells if c.cell_type == "code"]
    cells = [c for c in code_cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged parameters"
    assert code_cells[0] is cells[0], "the parameters cell must be the first code cell"
    names = []
    for statement in ast.parse(cells[0].source).body:
        assert isinstance(statement, ast.AnnAssign), f"{path.name}: `name: type = value` only"
        assert statement.value is not None
        ast.literal_eval(statement.value)  # raises if not a literal
        names.append(statement.target.id)  # type: ignore[attr-defined]
    assert {"profile", "seed"} <= set(names)


@pytest.mark.parametrize("path", NOTEBOOK_SOURCES, ids=lambda p: p.stem)
def test_papermill_sees_the_parameters(path: Path, tmp_path: Path) -> None:
    inspected = papermill.inspect_notebook(str(to_ipynb(path, tmp_path / f"{path.stem}.ipynb")))
    cell = next(c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", []))
    declared = [s.target.id for s in ast.parse(cell.source).body]  # type: ignore[attr-defined]
    assert list(inspected) == declared, "papermill cannot parse some lines (an '=' in a comment?)"
    assert inspected["profile"]["default"].strip("'\"") == "cpu"


@pytest.mark.parametrize("path", NOTEBOOK_SOURCES, ids=lambda p: p.stem)
def test_thin_and_offline(path: Path) -> None:
    text = path.read_text()
    assert not FORBIDDEN.search(text), f"{path.name} downloads or installs at run time"
    python = [line for line in text.splitlines() if not line.startswith(("%", "!"))]
    tree = ast.parse("\n".join(python))
    defined = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    assert not defined, f"{path.name} defines classes: logic belongs in mtl_diffusion/"
    assert "assert " in text, f"{path.name} asserts nothing"


@pytest.mark.parametrize("path", NOTEBOOK_SOURCES, ids=lambda p: p.stem)
def test_project_configs_take_string_overrides(path: Path) -> None:
    """A notebook that builds project configs lets papermill users override any key."""
    text = path.read_text()
    if "config.load(" not in text or "ssl_config(" in text:  # ScoreCL has its own settings
        pytest.skip("no project Config built here")
    assert re.search(r'^config_overrides: str = ""', text, re.M), path.name
    assert re.search(r"config\.(parse|notebook)_overrides\(.*config_overrides\)", text), path.name
