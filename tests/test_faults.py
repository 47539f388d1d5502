"""Faults injected into training, checkpoints, caches, the disk and the inputs: nothing is lost
or poisoned, and the error names the file or parameter and what to do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mtl_diffusion import cache, checkpoints, paths
from mtl_diffusion.checkpoints import CheckpointError
from mtl_diffusion.config import load
from mtl_diffusion.data import load_image_folder
from mtl_diffusion.example_folder import write_example_folder
from mtl_diffusion.paths import ROOT
from mtl_diffusion.runs import train_run
from mtl_diffusion.train import CHECKPOINT, NonFiniteLossError, Trainer

TINY = {
    "train.steps": 6,
    "train.batch_size": 8,
    "train.checkpoint_every": 3,
    "train.eval_every": 0,
    "model.base_channels": 8,
}


def tiny(**overrides: object):
    return load("smoke", {**TINY, **overrides})


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path / "artifacts")
    return tmp_path / "artifacts"


# --------------------------------------------------------------------- killed processes

KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys, torch
    from mtl_diffusion.config import load
    from mtl_diffusion.train import Trainer
    run_dir, mode = sys.argv[1], sys.argv[2]
    cfg = load("smoke", {TINY!r})
    trainer = Trainer(cfg, run_dir=__import__("pathlib").Path(run_dir))
    if mode == "mid-write":  # the second checkpoint dies half-written
        real = torch.save
        def dying(obj, handle, *a, **k):
            if obj["step"] == 6:
                handle.write(b"half a checkpoint")
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            real(obj, handle, *a, **k)
        torch.save = dying
    else:  # killed right after the first checkpoint
        save = trainer.save_checkpoint
        def save_then_die(path):
            save(path)
            os.kill(os.getpid(), signal.SIGKILL)
        trainer.save_checkpoint = save_then_die
    trainer.fit()
    """
).replace("{TINY!r}", repr(TINY))


@pytest.mark.parametrize("mode", ["mid-run", "mid-write"])
def test_a_run_killed_mid_run_or_mid_write_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, mode: str
) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(tmp_path), mode], env=env, cwd=ROOT, timeout=300
    )
    assert done.returncode == -signal.SIGKILL
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert state["step"] == 3  # the complete checkpoint is intact
    leftovers = list(tmp_path.glob(f".{CHECKPOINT}.*.tmp"))
    assert len(leftovers) == (1 if mode == "mid-write" else 0)
    for tmp in leftovers:  # as found by a later session: old
        os.utime(tmp, (time.time() - 3600, time.time() - 3600))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = Trainer(tiny(), run_dir=tmp_path)
        assert resumed.step == 3 and not list(tmp_path.glob("*.tmp"))  # stale file removed
        resumed.fit()
        straight = Trainer(tiny())
        straight.fit()
    finally:
        torch.set_num_threads(threads)
    for name, value in weights(straight).items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


# --------------------------------------------------------------------- non-finite state


def test_an_inf_gradient_at_a_checkpoint_step_keeps_the_previous_checkpoint(
    tmp_path: Path,
) -> None:
    trainer = Trainer(tiny(), run_dir=tmp_path)
    trainer.fit(steps=5)  # checkpoints at steps 3 and 5 (the end of this call)
    good = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    trainer.model.out_conv.register_full_backward_hook(lambda m, gi, go: (gi[0] * np.inf,))
    with pytest.raises(NonFiniteLossError, match=rf"step 6.*{CHECKPOINT} \(step 5\)"):
        trainer.fit()  # step 6 is a checkpoint step
    kept = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert kept["step"] == 5
    assert all(torch.equal(kept["model"][k], v) for k, v in good["model"].items())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_non_finite_weights_are_never_written(tmp_path: Path) -> None:
    trainer = Trainer(tiny(), run_dir=tmp_path)
    trainer.fit(steps=3)
    with torch.no_grad():
        trainer.ema.out_conv.weight[0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"ema.out_conv.weight.*not saved.*\(step 3\)"):
        trainer.save_checkpoint(tmp_path / CHECKPOINT)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=False)["step"] == 3


# --------------------------------------------------------------------- unreadable files


@pytest.mark.parametrize("content", ["truncated", "garbage"])
def test_an_unreadable_checkpoint_is_an_error_naming_the_file(tmp_path: Path, content) -> None:
    Trainer(tiny(), run_dir=tmp_path).fit(steps=3)
    path = tmp_path / CHECKPOINT
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content == "truncated" else b"\x00garbage" * 50)
    with pytest.raises(CheckpointError, match=rf"{path} cannot be read .*delete it"):
        Trainer(tiny(), run_dir=tmp_path)


def test_a_truncated_cache_entry_is_recomputed_with_a_warning(artifacts: Path) -> None:
    cfg = tiny()
    cache.load_or_compute(cfg, lambda: {"x": torch.ones(1000)}, name="t")
    path = cache.cache_path(cfg, "t")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.load_or_compute(cfg, lambda: {"x": 2}, name="t") == {"x": 2}


# --------------------------------------------------------------------- an edited source file


def test_an_edited_source_file_keeps_the_run_folder_and_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny()
    run_key, result_key = cache.cache_key(cfg, "r", code=False), cache.cache_key(cfg, "r")
    Trainer(cfg, run_dir=tmp_path).fit(steps=3)
    monkeypatch.setattr(checkpoints, "code_version", lambda: "edited")
    monkeypatch.setattr(cache, "code_version", lambda: "edited")
    assert cache.cache_key(cfg, "r", code=False) == run_key  # the run folder keeps its name
    assert cache.cache_key(cfg, "r") != result_key  # the cached result is recomputed
    with pytest.raises(CheckpointError, match="MTL_DIFFUSION_ON_CODE_CHANGE=resume"):
        Trainer(cfg, run_dir=tmp_path)
    monkeypatch.setenv("MTL_DIFFUSION_ON_CODE_CHANGE", "resume")
    with pytest.warns(UserWarning, match="resuming"):
        assert Trainer(cfg, run_dir=tmp_path).step == 3
    monkeypatch.setenv("MTL_DIFFUSION_ON_CODE_CHANGE", "restart")
    with pytest.warns(UserWarning, match="moved to"):
        assert Trainer(cfg, run_dir=tmp_path).step == 0
    assert len(list(tmp_path.glob(f"{CHECKPOINT}.code-*"))) == 1  # set aside, not deleted
    monkeypatch.setenv("MTL_DIFFUSION_ON_CODE_CHANGE", "maybe")
    Trainer(cfg).fit(steps=3)  # without a checkpoint the policy is not consulted
    next(tmp_path.glob("*.code-*")).replace(tmp_path / CHECKPOINT)  # back, still "old" code
    with pytest.raises(ValueError, match="MTL_DIFFUSION_ON_CODE_CHANGE must be one of"):
        Trainer(cfg, run_dir=tmp_path)


# --------------------------------------------------------------------- the disk


def test_an_unwritable_artifacts_folder_fails_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the artifacts folder should be")
    monkeypatch.setattr(paths, "ARTIFACTS", blocker / "artifacts")
    started = []
    monkeypatch.setattr(Trainer, "fit", lambda self, steps=None: started.append(1))
    with pytest.raises(OSError, match="MTL_DIFFUSION_ARTIFACTS to a writable folder"):
        train_run(tiny(), "blocked", evaluate=False)
    assert not started


def test_a_full_disk_keeps_the_result_in_memory(artifacts: Path, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "atomic_save", full)
    with pytest.warns(UserWarning, match="returned but not cached"):
        assert cache.load_or_compute(tiny(), lambda: 42, name="full") == 42
    monkeypatch.setattr(checkpoints, "atomic_save", full)
    trainer = Trainer(tiny(), run_dir=artifacts / "run")
    with pytest.warns(UserWarning, match="training continues without it"):
        history = trainer.fit()
    assert len(history.losses) == 6


# --------------------------------------------------------------------- inputs


def test_the_example_folder_never_replaces_a_folder_it_did_not_write(tmp_path: Path) -> None:
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ValueError, match="refusing to replace .*photos"):
        write_example_folder(mine, count=4, size=8)
    assert (mine / "holiday.jpg").read_bytes() == b"precious"
    made = write_example_folder(tmp_path / "made", count=4, size=8)
    write_example_folder(made, count=5, size=8)  # its own folder: replaced
    assert len(list(made.glob("*.png"))) == 5


def test_16_bit_and_float_images_are_scaled_and_bad_images_are_named(tmp_path: Path) -> None:
    grey = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "a16.png")
    Image.fromarray(grey.astype(np.float32) / 65535, mode="F").save(tmp_path / "b_float.tiff")
    Image.fromarray((grey // 257).astype(np.uint8)).save(tmp_path / "c8.png")
    images = load_image_folder(tmp_path, image_size=8, channels=1)
    assert len(images) == 3
    expected = torch.from_numpy(grey / 65535.0 * 2 - 1).float()
    for image in images:  # the 16-bit file was all +1.0 before
        torch.testing.assert_close(image[0], expected, atol=2.5 / 255, rtol=0)
    Image.fromarray(np.full((8, 8), 2.0, np.float32), mode="F").save(tmp_path / "d_bright.tiff")
    with pytest.raises(ValueError, match="d_bright.tiff: F pixels must lie in"):
        load_image_folder(tmp_path, image_size=8, channels=1)
    (tmp_path / "d_bright.tiff").unlink()
    (tmp_path / "e_broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="e_broken.png: cannot read this image"):
        load_image_folder(tmp_path, image_size=8, channels=3)


@pytest.mark.parametrize(
    "data, match",
    [
        (torch.randint(0, 255, (20, 1, 8, 8), dtype=torch.uint8), "must be a float tensor"),
        (torch.rand(20, 1, 8, 8) * 255, r"in \[-1, 1\], got .* values in \[0"),
        (torch.full((20, 1, 8, 8), float("nan")), "NaN or infinite"),
    ],
)
def test_user_data_is_checked_when_the_trainer_is_built(data, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Trainer(tiny(), data=data)


def test_a_feature_network_that_does_not_map_images_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_example_folder(tmp_path / "images", count=40, size=16)
    net = torch.jit.script(torch.nn.Flatten(0))  # (N, C, H, W) -> one long vector
    torch.jit.save(net, str(tmp_path / "net.pt"))
    cfg = load(
        "paper-smoke",
        {"data.path": str(folder), "eval.feature_net": str(tmp_path / "net.pt"), **TINY},
    )
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path / "artifacts")
    started = []
    monkeypatch.setattr(Trainer, "fit", lambda self, steps=None: started.append(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load
        with pytest.raises(ValueError, match="eval.feature_net must map \\(N, C, H, W\\) to"):
            train_run(cfg, "net", evaluate=True)
    assert not started


def test_a_full_disk_is_found_before_the_work_and_a_run_keeps_its_checkpoint(
    artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the probe writes real bytes: refused
    with pytest.raises(OSError, match="No space left on device.*MTL_DIFFUSION_ARTIFACTS"):
        cache.check_writable(artifacts / "probe")
    monkeypatch.undo()
    monkeypatch.setattr(paths, "ARTIFACTS", artifacts)
    monkeypatch.setattr(cache, "atomic_save", full)  # the result cannot be cached ...
    with pytest.warns(UserWarning, match="returned but not cached"):
        result = train_run(tiny(), "kept", evaluate=False)
    assert len(result.history.losses) == 6
    kept = list((artifacts / "smoke" / "runs").glob("kept-*/checkpoint.pt"))
    assert len(kept) == 1  # ... so the run's final checkpoint is not deleted


def test_digits_refuse_other_sizes_when_the_config_is_loaded() -> None:
    from mtl_diffusion.config import ConfigError

    with pytest.raises(ConfigError, match="data.image_size must be 8 and data.channels 1"):
        load("smoke", {"data.image_size": 16})


def test_the_example_folder_keeps_files_a_user_added_to_it(tmp_path: Path) -> None:
    made = write_example_folder(tmp_path / "made", count=4, size=8)
    (made / "mine.png").write_bytes(b"a user's image")
    with pytest.raises(ValueError, match="refusing to replace .*mine.png"):
        write_example_folder(made, count=4, size=8)
    assert (made / "mine.png").read_bytes() == b"a user's image"
