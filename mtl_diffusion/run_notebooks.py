"""Run (or only prepare) every notebook under one profile with papermill.

    python -m mtl_diffusion.run_notebooks --profile cpu              # make figures
    python -m mtl_diffusion.run_notebooks --profile smoke --prepare-only   # for nbval
    python -m mtl_diffusion.run_notebooks --profile cpu 00 -p seed 3

Percent-format sources in notebooks/ are converted with jupytext; outputs go to
build/notebooks/<profile>/, with the wall time of each run in runtimes.json there.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import time
from pathlib import Path

from mtl_diffusion.config import PROFILES
from mtl_diffusion.paths import BUILD, NOTEBOOKS


def sources(selected: list[str]) -> list[Path]:
    """Numbered notebook sources, filtered by name prefixes/substrings if any are given."""
    found = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if selected:
        found = [p for p in found if any(s in p.stem for s in selected)]
        if not found:
            raise SystemExit(f"no notebook matches {selected}; available: {[p.stem for p in sources([])]}")
    return found


def to_ipynb(source: Path, target: Path) -> Path:
    """Convert a percent-format source to .ipynb at `target`."""
    import jupytext

    target.parent.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(notebook, target, fmt="ipynb")
    return target


def run(profile: str, selected: list[str], params: dict[str, object], prepare_only: bool) -> None:
    import papermill

    out_dir = BUILD / "notebooks" / profile
    runtimes_path = out_dir / "runtimes.json"
    runtimes = json.loads(runtimes_path.read_text()) if runtimes_path.exists() else {}
    os.environ.setdefault("MTL_DIFFUSION_QUIET", "1")  # papermill shows progress per cell
    for source in sources(selected):
        raw = to_ipynb(source, out_dir / "src" / f"{source.stem}.ipynb")
        output = out_dir / f"{source.stem}.ipynb"
        start = time.perf_counter()
        papermill.execute_notebook(
            str(raw),
            str(output),
            parameters={"profile": profile, **params},
            prepare_only=prepare_only,
            kernel_name="python3",
            cwd=str(NOTEBOOKS),
            progress_bar=not prepare_only,
        )
        if not prepare_only:
            runtimes[source.stem] = round(time.perf_counter() - start, 1)
            print(f"{source.stem}: {runtimes[source.stem]:.0f} s ({profile})", flush=True)
    if not prepare_only:
        runtimes_path.write_text(json.dumps(runtimes, indent=2, sort_keys=True) + "\n")


def parse_value(text: str) -> object:
    """A literal if it parses as one (3, 0.5, True, (1, 2)), else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="name prefixes or substrings (default: all)")
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--prepare-only", action="store_true", help="inject parameters, do not run")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args()
    params = {name: parse_value(value) for name, value in args.param}
    run(args.profile, args.notebooks, params, args.prepare_only)


if __name__ == "__main__":
    main()
