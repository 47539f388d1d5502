"""The package's layers, read from its source: maths, models and the engine never import the
Config or anything above them; no module imports another inside a function (a lazy import
that dodges a circle); nothing rewrites an ImportError; the import graph has no circle."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import mtl_diffusion

PACKAGE = Path(mtl_diffusion.__file__).parent
# Layers 1-3: usable in a researcher's own loop without a Config.
CONFIG_FREE = (
    "clustering", "data", "diffusion", "ema", "likelihood", "metrics", "oracle", "progress",
    "routing", "sampling", "stats", "timesteps", "weighting", "models", "mtl",
    "scorecl.augment", "scorecl.encoder", "scorecl.knn", "scorecl.losses", "scorecl.score",
    "scorecl.weights",
    "meme.assignment", "meme.batch", "meme.blocks", "meme.expert", "meme.multi_expert",
    "meme.spectrum",
)  # fmt: skip
# Packages whose own __init__ is Config-free although a submodule is not (meme.training).
CONFIG_FREE_INITS = ("meme",)


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text())
    return found


def imports(tree: ast.Module) -> tuple[set[str], list[int]]:
    """Project modules imported at module level, and the lines of imports inside functions."""
    top, nested = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mtl_diffusion"):
            names = [node.module.removeprefix("mtl_diffusion").lstrip(".")]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("mtl_diffusion").lstrip(".") for a in node.names
                     if a.name.startswith("mtl_diffusion")]  # fmt: skip
        else:
            continue
        if names and node.col_offset:
            nested.append(node.lineno)
        top.update(n for n in names if n)
    return top, nested


def is_config_free(name: str) -> bool:
    if name in CONFIG_FREE_INITS:
        return True
    return any(name == m or name.startswith(m + ".") for m in CONFIG_FREE)


def test_lower_layers_never_import_upward() -> None:
    found = modules()
    for name, tree in found.items():
        if not is_config_free(name):
            continue
        upward = {dep for dep in imports(tree)[0] if not is_config_free(dep)}
        assert not upward, f"{name} imports {sorted(upward)} from a higher layer"


def test_no_lazy_imports_and_no_rewritten_import_errors() -> None:
    for name, tree in modules().items():
        assert not imports(tree)[1], f"{name} imports inside a function at lines {imports(tree)[1]}"
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                caught = ast.unparse(node.type)
                assert "ImportError" not in caught, f"{name} catches {caught}"


def test_the_import_graph_has_no_circle() -> None:
    graph = {name: imports(tree)[0] for name, tree in modules().items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as err:  # pragma: no cover - the failure message
        raise AssertionError(f"import circle: {err.args[1]}") from None
