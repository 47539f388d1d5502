"""What every notebook does first, however it is run (run_notebooks, papermill's CLI or Python
API, Jupyter):

    this_run = notebook.start("00_quickstart", globals())   # first line after `parameters`

- **Strict parameters.** A parameter papermill injected that the notebook does not declare
  (``-p sead 3``) is an error listing the declared ones; papermill itself only logs a warning.
- **Its own place.** The run folder is ``build/runs/<profile>/<notebook>/<name=value,...>``,
  named by the parameters that differ from the notebook's defaults ("defaults" when none);
  figures go to its ``figures/``. Only ``make figures`` (run_notebooks --publish) with default
  parameters writes the committed ``figures/`` (``figures/paper/`` under the paper profile).
- **One BLAS thread** per process unless OMP_NUM_THREADS is set (two stall on a loaded
  2-core machine).
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl_diffusion.cache import code_version
from mtl_diffusion.config import ConfigError
from mtl_diffusion.paths import BUILD, FIGURES, NOTEBOOKS
from mtl_diffusion.repro import environment

PUBLISH_ENV = "MTL_DIFFUSION_PUBLISH"  # set by run_notebooks --publish (make figures)
PUBLISHED = {"cpu": FIGURES, "paper": FIGURES / "paper"}


def declared_parameters(source: Path) -> dict[str, Any]:
    """{name: default} of the `parameters` cell of a percent-format notebook source."""
    text = source.read_text()
    marker = text.find('tags=["parameters"]')
    if marker < 0:
        raise ValueError(f"{source} has no cell tagged parameters")
    body = text[text.index("\n", marker) + 1 :].split("\n# %%", 1)[0]
    defaults = {}
    for statement in ast.parse(body).body:
        if isinstance(statement, ast.AnnAssign) and statement.value is not None:
            defaults[statement.target.id] = ast.literal_eval(statement.value)  # type: ignore[attr-defined]
    return defaults


def run_name(params: dict[str, Any], defaults: dict[str, Any]) -> str:
    """ "name=value,..." of the parameters that differ from their defaults (profile aside)."""
    changed = [
        f"{name}={_short(value)}"
        for name, value in sorted(params.items())
        if name != "profile" and defaults.get(name) != value
    ]
    return ",".join(changed) or "defaults"


def _short(value: Any) -> str:
    text = str(value).replace("/", "_").replace(" ", "_")
    return text if len(text) <= 40 else text[:37] + "..."


def check_parameters(notebook: str, given: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Raise ConfigError for a parameter the notebook does not declare."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(
            f"{notebook} has no parameter {', '.join(map(repr, unknown))}; it declares "
            f"{', '.join(defaults)}"
        )


def injected_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """The assignments of papermill's injected cell (its source starts "# Parameters"), read
    from IPython's input history; {} outside papermill."""
    for source in reversed(namespace.get("In", [])):
        if source.lstrip().startswith("# Parameters"):
            tree = ast.parse(source)
            return {
                target.id: ast.literal_eval(node.value)
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
    return {}


@dataclass(frozen=True)
class NotebookRun:
    """Where one notebook run writes: `folder` (results) and `figures`."""

    notebook: str
    profile: str
    params: dict[str, Any]
    folder: Path
    figures: Path

    def save_results(
        self, numbers: dict[str, Any], config: Any = None, seeds: Sequence[int] = ()
    ) -> Path:
        """Write results.json beside the executed notebook: the numbers the notebook's claims
        rest on, its parameters, config, seeds, library versions and git revision."""
        record = {
            "notebook": self.notebook,
            "profile": self.profile,
            "params": self.params,
            "seeds": list(seeds),
            "config": config,
            "environment": {**environment(), "code": code_version()},
            "results": numbers,
        }
        path = self.folder / RESULTS
        text = json.dumps(_jsonable(record), indent=1)
        tmp = path.with_name(f".{RESULTS}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return path


RESULTS = "results.json"


def _jsonable(value: Any) -> Any:
    """`value` with numpy and torch values as lists and numbers, tuple keys joined by " / "
    (JSON objects take string keys only), configs as dicts."""
    if isinstance(value, dict):
        return {
            " / ".join(map(str, k)) if isinstance(k, tuple) else str(k): _jsonable(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def start(notebook: str, namespace: dict[str, Any]) -> NotebookRun:
    """Check the parameters, create the run folder, point savefig at it, one BLAS thread."""
    defaults = declared_parameters(NOTEBOOKS / f"{notebook}.py")
    check_parameters(notebook, injected_parameters(namespace), defaults)
    params = {name: namespace[name] for name in defaults}
    profile = params["profile"]
    folder = BUILD / "runs" / profile / notebook / run_name(params, defaults)
    publish = os.environ.get(PUBLISH_ENV) == "1" and profile in PUBLISHED
    publish = publish and run_name(params, defaults) == "defaults"
    figures = PUBLISHED[profile] if publish else folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    run = NotebookRun(notebook, profile, params, folder, figures)
    global CURRENT
    CURRENT = run
    return run


CURRENT: NotebookRun | None = None  # the run of this process's notebook, once started
