"""Run (or only prepare) every notebook under one profile with papermill.

    python -m mtl_diffusion.run_notebooks --profile cpu --jobs 2 --publish   # make figures
    python -m mtl_diffusion.run_notebooks --profile smoke --prepare-only     # for nbval
    python -m mtl_diffusion.run_notebooks --profile cpu 00 -p seed 3

Percent-format sources in notebooks/ are converted with jupytext. An executed notebook goes to
its run folder build/runs/<profile>/<notebook>/<name=value,...>/ (see mtl_diffusion.notebook),
beside its figures; prepared ones to build/notebooks/<profile>/; the wall time of each run is
kept in build/notebooks/<profile>/runtimes.json, which the next run's time estimates read.
With --jobs > 1, the runs that several notebooks share are trained first, each in a slot of
its own: the calibration run (02, 04-06) and, under cpu with default seeds and steps, the
vanilla arm of 04-06 (runs.shared_vanilla_arm).
A -p name the notebook does not declare, or -p profile, is refused before anything runs;
relative data.path / eval.feature_net in config_overrides are resolved against the caller's
working directory.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shlex
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from mtl_diffusion.calibration import shared_calibration, train_calibration
from mtl_diffusion.config import PROFILES, Config, parse_overrides
from mtl_diffusion.notebook import (
    PUBLISH_ENV,
    check_parameters,
    declared_parameters,
    run_name,
)
from mtl_diffusion.notebook_progress import Monitor
from mtl_diffusion.paths import BUILD, NOTEBOOKS
from mtl_diffusion.runs import ARMS, shared_vanilla_arm, train_many

PATH_KEYS = ("data.path", "eval.feature_net")
CALIBRATION_CALL = "calibration_run("  # in a notebook's source: it trains on the calibration run
ARMS_IMPORT = "import ARMS"  # in a notebook's source: it caches its compared runs under ARMS
SCHEDULE_PARAMS = ("seed", "num_seeds", "steps")  # -p names that change the shared vanilla arm
INLINE = "module://matplotlib_inline.backend_inline"  # executed notebooks keep their figures


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


def own_params(source: Path, params: dict[str, object]) -> dict[str, object]:
    """The parameters of `params` that the notebook declares."""
    defaults = declared_parameters(source)
    return {name: value for name, value in params.items() if name in defaults}


def output_path(source: Path, profile: str, params: dict[str, object], prepare_only: bool) -> Path:
    """build/notebooks/<profile>/<nb>.ipynb when prepared, else in the run's own folder."""
    if prepare_only:
        return BUILD / "notebooks" / profile / f"{source.stem}.ipynb"
    defaults = declared_parameters(source)
    name = run_name({**defaults, "profile": profile, **own_params(source, params)}, defaults)
    return BUILD / "runs" / profile / source.stem / name / f"{source.stem}.ipynb"


def run_one(source: Path, profile: str, params: dict[str, object], prepare_only: bool) -> float:
    """Convert, parameterise and (unless prepare_only) execute one notebook; return seconds."""
    import papermill

    params = own_params(source, params)
    out = output_path(source, profile, params, prepare_only)
    # the unparameterised conversions live outside out_dir, which nbval collects
    raw = to_ipynb(source, BUILD / "notebooks" / "src" / f"{source.stem}.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(
        str(raw),
        str(out),
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
    os.environ["MPLBACKEND"] = INLINE
    notebooks = sources(selected)
    params = check_params(notebooks, profile, params)
    monitor = None
    if not prepare_only:
        last = announce(notebooks, profile, jobs)
        outputs = {nb.stem: output_path(nb, profile, params, False) for nb in notebooks}
        monitor = Monitor(outputs, last)
        monitor.start()
    outcomes: dict[str, float | BaseException] = {}  # seconds, or what stopped the notebook
    if jobs <= 1:
        for nb in notebooks:
            try:
                outcomes[nb.stem] = run_one(nb, profile, params, prepare_only)
            except Exception as err:  # reported below, with the others
                outcomes[nb.stem] = err
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            first = calibration_first(notebooks, profile, params, prepare_only)
            warm = pool.submit(train_calibration, first) if first is not None else None
            arms = vanilla_arm_first(notebooks, profile, params, prepare_only)
            warm_arms = pool.submit(train_arms, arms) if arms else None
            futures = {
                nb.stem: pool.submit(run_one, nb, profile, params, prepare_only) for nb in notebooks
            }
            outcomes = {name: f.exception() or f.result() for name, f in futures.items()}
            if warm is not None and warm.exception() is not None:  # each notebook retries it
                print(f"training the calibration run first failed: {warm.exception()!r}")
            if warm_arms is not None and warm_arms.exception() is not None:  # retried likewise
                print(f"training the shared vanilla arm first failed: {warm_arms.exception()!r}")
    if monitor is not None:
        monitor.stop()
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


def calibration_first(
    notebooks: list[Path], profile: str, params: dict[str, object], prepare_only: bool
) -> Config | None:
    """The calibration run's base config when two or more of `notebooks` train on it and this
    profile trains inline: run() trains it first in its own slot, beside the first notebooks,
    instead of inside one notebook while the others wait on its cache lock."""
    if prepare_only or sum(CALIBRATION_CALL in nb.read_text() for nb in notebooks) < 2:
        return None
    return shared_calibration(profile, str(params.get("config_overrides", "")))


def vanilla_arm_first(
    notebooks: list[Path], profile: str, params: dict[str, object], prepare_only: bool
) -> list[Config]:
    """The configs of the vanilla arm that two or more of `notebooks` share (04-06 under cpu,
    cached under runs.ARMS) when none of SCHEDULE_PARAMS is given: run() trains it first in a
    slot of its own, as it does the calibration run; [] otherwise."""
    if prepare_only or any(name in params for name in SCHEDULE_PARAMS):
        return []
    if sum(ARMS_IMPORT in nb.read_text() for nb in notebooks) < 2:
        return []
    return shared_vanilla_arm(profile, str(params.get("config_overrides", "")))


def train_arms(configs: list[Config]) -> float:
    """Train (or load) `configs` under runs.ARMS one after another on one thread; seconds."""
    torch.set_num_threads(1)
    return sum(run.history.seconds for run in train_many(configs, ARMS, jobs=1))


def check_params(notebooks: list[Path], profile: str, params: dict[str, object]) -> dict:
    """Refuse -p profile and any -p name that no selected notebook declares (SystemExit; with
    one notebook selected: any name it does not declare); resolve relative paths in
    config_overrides against the caller's working directory. run_one passes each notebook
    only the parameters it declares."""
    if "profile" in params:
        raise SystemExit(f"use --profile, not -p profile (got --profile {profile} and -p profile)")
    declared: dict[str, object] = {}
    for source in notebooks:
        declared.update(declared_parameters(source))
    try:
        check_parameters(" / ".join(nb.stem for nb in notebooks), params, declared)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    overrides = params.get("config_overrides")
    if isinstance(overrides, str) and overrides:
        parsed = parse_overrides(overrides)
        for key in PATH_KEYS:
            if key in parsed and parsed[key] and not Path(str(parsed[key])).is_absolute():
                parsed[key] = str(Path(str(parsed[key])).resolve())
        params = {**params, "config_overrides": shlex.join(f"{k}={v}" for k, v in parsed.items())}
    return params


def announce(notebooks: list[Path], profile: str, jobs: int) -> dict[str, float]:
    """Say what runs and how long it took last time (build/notebooks/<profile>/runtimes.json);
    return those runtimes."""
    path = BUILD / "notebooks" / profile / "runtimes.json"
    last = json.loads(path.read_text()) if path.exists() else {}
    known = [last[nb.stem] for nb in notebooks if nb.stem in last]
    parts = [f"{nb.stem} ({_duration(last[nb.stem])} last time)" if nb.stem in last else nb.stem
             for nb in notebooks]  # fmt: skip
    estimate = f"; about {_duration(sum(known) / max(jobs, 1))} like last time" if known else ""
    print(f"running {len(notebooks)} notebook(s), {jobs} at a time, under {profile}: "
          f"{', '.join(parts)}{estimate}", flush=True)  # fmt: skip
    return last


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


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
        "--publish", action="store_true", help="default parameters write figures/ (make figures)"
    )
    parser.add_argument(
        "-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    args = parser.parse_args()
    params = {name: parse_value(value) for name, value in args.param}
    if args.publish:
        os.environ[PUBLISH_ENV] = "1"
    run(args.profile, args.notebooks, params, args.prepare_only, args.jobs)


if __name__ == "__main__":
    main()
