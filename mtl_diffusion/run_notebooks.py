"""Run (or only prepare) every notebook under one profile with papermill.

    python -m mtl_diffusion.run_notebooks --profile cpu --jobs 2     # make figures
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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mtl_diffusion.config import PROFILES
from mtl_diffusion.paths import BUILD, NOTEBOOKS


def sources(selected: list[str]) -> list[Path]:
    """Numbered notebook sources, filtered by name prefixes/substrings or paths if any are given
    (`00`, `quickstart`, `notebooks/00_quickstart.py` all select the quickstart)."""
    found = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if selected:
        names = [Path(s).stem if s.endswith((".py", ".ipynb")) else s for s in selected]
        found = [p for p in found if any(name in p.stem for name in names)]
        if not found:
            raise SystemExit(
                f"no notebook matches {selected}; available: {[p.stem for p in sources([])]}"
            )
    return found


def to_ipynb(source: Path, target: Path) -> Path:
    """Convert a percent-format source to .ipynb at `target`."""
    import jupytext

    target.parent.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    jupytext.write(notebook, target, fmt="ipynb")
    return target


def run_one(source: Path, profile: str, params: dict[str, object], prepare_only: bool) -> float:
    """Convert, parameterise and (unless prepare_only) execute one notebook; return seconds."""
    import papermill

    out_dir = BUILD / "notebooks" / profile
    # the unparameterised conversions live outside out_dir, which nbval collects
    raw = to_ipynb(source, BUILD / "notebooks" / "src" / f"{source.stem}.ipynb")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(
        str(raw),
        str(out_dir / f"{source.stem}.ipynb"),
        parameters={"profile": profile, **params},
        prepare_only=prepare_only,
        kernel_name="python3",
        cwd=str(NOTEBOOKS),
        progress_bar=False,
    )
    seconds = round(time.perf_counter() - start, 1)
    if not prepare_only:
        print(f"{source.stem}: {seconds:.0f} s ({profile})", flush=True)
    return seconds


def run(
    profile: str, selected: list[str], params: dict[str, object], prepare_only: bool, jobs: int = 1
) -> None:
    """Run the selected notebooks, `jobs` at a time, and record their wall times; a failing
    notebook does not stop the others, and the run exits with an error naming every failure."""
    os.environ.setdefault("MTL_DIFFUSION_QUIET", "1")  # no tqdm bars inside executed notebooks
    notebooks = sources(selected)
    outcomes: dict[str, float | BaseException] = {}  # seconds, or what stopped the notebook
    if jobs <= 1:
        for nb in notebooks:
            try:
                outcomes[nb.stem] = run_one(nb, profile, params, prepare_only)
            except Exception as err:  # reported below, with the others
                outcomes[nb.stem] = err
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {
                nb.stem: pool.submit(run_one, nb, profile, params, prepare_only) for nb in notebooks
            }
            outcomes = {name: f.exception() or f.result() for name, f in futures.items()}
    failed = {k: v for k, v in outcomes.items() if isinstance(v, BaseException)}
    seconds = {k: v for k, v in outcomes.items() if not isinstance(v, BaseException)}
    if not prepare_only and seconds:
        runtimes_path = BUILD / "notebooks" / profile / "runtimes.json"
        runtimes_path.parent.mkdir(parents=True, exist_ok=True)
        runtimes = json.loads(runtimes_path.read_text()) if runtimes_path.exists() else {}
        runtimes.update(seconds)
        runtimes_path.write_text(json.dumps(runtimes, indent=2, sort_keys=True) + "\n")
    if failed:
        details = "\n".join(  # papermill's errors carry the cell's exception as ename/evalue
            f"  {name}: {getattr(e, 'ename', type(e).__name__)}: {getattr(e, 'evalue', e)}"
            for name, e in failed.items()
        )
        raise SystemExit(
            f"{len(failed)} notebook(s) failed (executed copies in "
            f"{BUILD / 'notebooks' / profile}):\n{details}"
        )


def parse_value(text: str) -> object:
    """A literal if it parses as one (3, 0.5, True, (1, 2)), else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("notebooks", nargs="*", help="name prefixes or substrings (default: all)")
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--prepare-only", action="store_true", help="inject parameters, do not run")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run at once")
    parser.add_argument(
        "-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    args = parser.parse_args()
    params = {name: parse_value(value) for name, value in args.param}
    run(args.profile, args.notebooks, params, args.prepare_only, args.jobs)


if __name__ == "__main__":
    main()
