"""The README's own-training-loop example runs as written (fewer steps and a smaller batch)."""

from __future__ import annotations

import re

import pytest
import torch

from mtl_diffusion.paths import ROOT

pytest.importorskip("diffusers")
SECTION = "## Use the core in your own training loop"


def example_code() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_example_trains_uw_and_pcgrad_through_the_checked_fast_path() -> None:
    code = example_code()
    scaled, count = re.subn(
        r"^steps, batch_size, k = \d+, \d+, 5$", "steps, batch_size, k = 3, 20, 5", code, flags=re.M
    )
    assert count == 1, "the example's first settings line changed: update this test"
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(scaled, "README.md", "exec"), namespace)
    uw, pcgrad = namespace["uw"], namespace["pcgrad"]
    assert pcgrad.checked and pcgrad.path == "fast"  # compared with the reference on batch 1
    assert uw.method.s.grad is not None and (uw.method.s != 0).all()  # UW's group was stepped
    for engine in (uw, pcgrad):
        assert all(torch.isfinite(p).all() for p in engine.model.parameters())
