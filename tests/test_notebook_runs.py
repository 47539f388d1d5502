"""Notebook runs: strict parameters, a folder of their own, published figures only from make
figures with default parameters, relative paths from the caller's directory."""

from __future__ import annotations

from pathlib import Path

import papermill
import pytest

from mtl_diffusion import notebook, run_notebooks
from mtl_diffusion.config import ConfigError, parse_overrides
from mtl_diffusion.notebook import declared_parameters, injected_parameters, run_name, start
from mtl_diffusion.paths import NOTEBOOKS
from mtl_diffusion.run_notebooks import check_params, sources, to_ipynb

QUICKSTART = NOTEBOOKS / "00_quickstart.py"


def test_declared_parameters_are_what_papermill_reads(tmp_path: Path) -> None:
    for source in sources([]):
        inspected = papermill.inspect_notebook(str(to_ipynb(source, tmp_path / "nb.ipynb")))
        assert list(declared_parameters(source)) == list(inspected), source.stem


def test_run_folders_are_named_by_the_parameters_that_differ() -> None:
    defaults = declared_parameters(QUICKSTART)
    assert run_name({**defaults, "profile": "smoke"}, defaults) == "defaults"
    changed = {**defaults, "seed": 3, "arch": "dit", "config_overrides": "data.path=/a b"}
    assert run_name(changed, defaults) == "arch=dit,config_overrides=data.path=_a_b,seed=3"


def test_run_notebooks_refuses_an_undeclared_or_contradicting_parameter() -> None:
    quickstart = sources(["00"])
    with pytest.raises(
        SystemExit, match="00_quickstart has no parameter 'sead'; it declares profile"
    ):
        check_params(quickstart, "smoke", {"sead": 3})
    with pytest.raises(SystemExit, match="use --profile, not -p profile"):
        check_params(quickstart, "smoke", {"profile": "cpu"})
    both = sources(["00", "07"])  # 07 has no config_overrides: a name one of them declares
    assert check_params(both, "smoke", {"config_overrides": ""}) == {"config_overrides": ""}


def test_relative_paths_resolve_against_the_callers_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = check_params(
        sources(["00"]), "paper-smoke", {"config_overrides": "data.path=images train.steps=3"}
    )
    parsed = parse_overrides(params["config_overrides"])
    assert parsed == {"data.path": str(tmp_path / "images"), "train.steps": 3}


def namespace(**injected: object) -> dict:
    """A kernel's globals after papermill injected `injected` (IPython keeps cell sources)."""
    source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in injected.items())
    values = {**declared_parameters(QUICKSTART), **injected}
    return {"In": ["", "profile: str = 'cpu'", source], **values}


def test_papermill_users_get_the_same_strict_check(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(notebook, "BUILD", tmp_path)
    assert injected_parameters(namespace(profile="smoke", sead=3)) == {
        "profile": "smoke",
        "sead": 3,
    }
    with pytest.raises(ConfigError, match="00_quickstart has no parameter 'sead'"):
        start("00_quickstart", namespace(profile="smoke", sead=3))
    run = start("00_quickstart", namespace(profile="smoke", seed=3))
    assert run.folder == tmp_path / "runs" / "smoke" / "00_quickstart" / "seed=3"
    assert run.figures == run.folder / "figures" and run.figures.is_dir()


@pytest.mark.parametrize(
    "publish, seed, published", [("1", 0, True), ("1", 3, False), ("", 0, False)]
)
def test_only_make_figures_with_default_parameters_writes_the_committed_figures(
    tmp_path, monkeypatch, publish: str, seed: int, published: bool
) -> None:
    monkeypatch.setattr(notebook, "BUILD", tmp_path / "build")
    monkeypatch.setattr(notebook, "PUBLISHED", {"cpu": tmp_path / "figures"})
    monkeypatch.setenv(notebook.PUBLISH_ENV, publish)
    run = start("00_quickstart", namespace(profile="cpu", seed=seed))
    assert (run.figures == tmp_path / "figures") == published


def test_the_runner_passes_each_notebook_only_what_it_declares(tmp_path, monkeypatch) -> None:
    seen = {}

    def execute(raw, out, parameters, **kwargs):
        out = Path(out)
        seen[out.parent.parent.name] = (out.parent.name, parameters)

    monkeypatch.setattr(run_notebooks, "BUILD", tmp_path)
    monkeypatch.setattr(papermill, "execute_notebook", execute)
    run_notebooks.run(
        "smoke", ["00", "07"], {"config_overrides": "train.steps=3", "seed": 2}, False
    )
    assert seen == {
        "00_quickstart": ("config_overrides=train.steps=3,seed=2",
                          {"profile": "smoke", "config_overrides": "train.steps=3", "seed": 2}),
        "07_scorecl": ("seed=2", {"profile": "smoke", "seed": 2}),  # it has no config_overrides
    }  # fmt: skip


def test_results_of_a_batch_load_into_one_table(tmp_path, monkeypatch) -> None:
    import numpy as np
    import torch

    from mtl_diffusion.config import load
    from mtl_diffusion.results import load_results

    monkeypatch.setattr(notebook, "BUILD", tmp_path)
    for seed in (0, 1, 2):
        for k in (3, 5):
            run = start("04_ant_training", {
                "In": [f"# Parameters\nprofile = 'smoke'\nseed = {seed}\nnum_clusters = {k}\n"],
                **declared_parameters(NOTEBOOKS / "04_ant_training.py"),
                "profile": "smoke", "seed": seed, "num_clusters": k,
            })  # fmt: skip
            final = {("UW", "snr"): {"fd": np.array([1.0 + seed, 2.0]), "kid": torch.tensor(0.5)}}
            run.save_results({"final": final, "k": k}, config=load("smoke"), seeds=[seed])
    frame = load_results(tmp_path / "runs", notebook="04_ant_training")
    assert len(frame) == 6 and frame["folder"].nunique() == 6
    assert sorted(zip(frame["param.seed"], frame["param.num_clusters"], strict=True)) == [
        (s, k) for s in (0, 1, 2) for k in (3, 5)
    ]
    first_fd = frame["results.final.UW / snr.fd"].map(lambda v: v[0])
    assert (first_fd == 1.0 + frame["param.seed"]).all()
    assert (frame["results.final.UW / snr.kid"] == 0.5).all()
    assert (frame["results.k"] == frame["param.num_clusters"]).all()
    assert load_results(tmp_path / "runs", notebook="00_quickstart").empty


def test_a_papermill_batch_over_seeds_and_a_parameter_run_twice(tmp_path, monkeypatch) -> None:
    """3 seeds x 2 values of k_shown of the clustering notebook under smoke, executed by
    papermill twice: 6 separate runs with figures and results, the second pass from the cache;
    then a misspelled parameter fails before any kernel starts."""
    from mtl_diffusion import paths
    from mtl_diffusion.results import load_results

    for name, folder in (("ARTIFACTS", tmp_path / "artifacts"), ("BUILD", tmp_path / "build")):
        monkeypatch.setenv(f"MTL_DIFFUSION_{name}", str(folder))  # seen by the kernels
        monkeypatch.setattr(paths, name, folder)
    monkeypatch.setattr(run_notebooks, "BUILD", tmp_path / "build")
    batch = [{"seed": s, "k_shown": k} for s in (0, 1, 2) for k in (3, 4)]

    def run_batch() -> dict[Path, int]:
        run_notebooks.run("smoke", ["03"], {}, prepare_only=True)  # one conversion, then:
        for params in batch:
            run_notebooks.run("smoke", ["03"], params, prepare_only=False)
        return {p: p.stat().st_mtime_ns for p in (tmp_path / "artifacts").rglob("*.pt")}

    first = run_batch()
    assert first, "the first pass cached nothing"
    assert run_batch() == first  # the second pass computed nothing: every result from the cache
    defaults = declared_parameters(NOTEBOOKS / "03_interval_clustering.py")
    root = tmp_path / "build" / "runs" / "smoke" / "03_interval_clustering"
    for params in batch:
        folder = root / run_name({**defaults, **params}, defaults)
        assert list((folder / "figures").glob("*.png")) and (folder / "results.json").is_file()
    frame = load_results(tmp_path / "build" / "runs")
    pairs = zip(frame["param.seed"], frame["param.k_shown"], strict=True)
    assert len(frame) == 6 and sorted(pairs) == sorted((p["seed"], p["k_shown"]) for p in batch)
    with pytest.raises(SystemExit, match="no parameter 'k_show'"):
        run_notebooks.run("smoke", ["03"], {"k_show": 3}, prepare_only=False)
