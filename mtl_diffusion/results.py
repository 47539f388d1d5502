"""Notebook results as data: every run's results.json (see notebook.NotebookRun.save_results)
in one pandas DataFrame.

    from mtl_diffusion.results import load_results
    frame = load_results(notebook="04_ant_training", profile="cpu")   # one row per run

Columns: notebook, profile, the run's parameters (param.<name>), seeds, git_commit, folder, and
every result flattened to dotted names (results.<key>.<key>...); lists stay lists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_diffusion.paths import BUILD


def load_results(
    root: str | Path | None = None, notebook: str | None = None, profile: str | None = None
) -> pd.DataFrame:
    """One row per results.json under `root` (default build/runs), optionally one notebook or
    profile; ValueError naming the file for one that cannot be read."""
    root = Path(root) if root is not None else BUILD / "runs"
    rows = []
    for path in sorted(root.rglob("results.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(
                f"{path} cannot be read ({error}): delete it or rerun that notebook"
            ) from error
        if notebook not in (None, record["notebook"]) or profile not in (None, record["profile"]):
            continue
        row: dict[str, Any] = {"notebook": record["notebook"], "profile": record["profile"]}
        row |= {f"param.{k}": v for k, v in record["params"].items()}
        row |= {"seeds": record["seeds"], "git_commit": record["environment"].get("git_commit")}
        row |= _flatten(record["results"], "results")
        row["folder"] = str(path.parent)
        rows.append(row)
    return pd.DataFrame(rows)


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flatten(item, f"{prefix}.{key}")
        return flat
    return {prefix: value}
