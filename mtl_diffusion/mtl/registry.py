"""MTL methods by name, with how the training loop calls each one.

kind "loss": m = spec.build(k, **options); each step w = m.weights(losses) and the loss is
sum_i w_i L_i (one backward). Exceptions flagged on the spec: `trainable` (uncertainty
weighting): the loss is m(losses) and m.param_group() joins the optimizer; `needs_update`
(FAMO): after the optimizer step call m.update(new_losses) with the losses re-measured on the
same batch.
kind "gradient": f = spec.build(k, **options); with the Gramian G of the k per-cluster gradients,
w = f(G) and the update is sum_i w_i g_i.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from mtl_diffusion.mtl.cagrad import cagrad_weights
from mtl_diffusion.mtl.dwa import DWA, EqualWeighting
from mtl_diffusion.mtl.famo import FAMO
from mtl_diffusion.mtl.imtlg import imtlg_weights
from mtl_diffusion.mtl.mgda import mgda_weights
from mtl_diffusion.mtl.nash import NashMTL
from mtl_diffusion.mtl.pcgrad import pcgrad_weights
from mtl_diffusion.mtl.uncertainty import UncertaintyWeighting

KINDS = ("loss", "gradient")


@dataclass(frozen=True)
class MethodSpec:
    """One MTL method: its kind, a builder `build(k, **options)`, and how to call the result."""

    name: str
    kind: str
    build: Callable[..., Any]
    trainable: bool = False
    needs_update: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


def _function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Builder of a stateless Gramian function: options bound, k unused."""
    return lambda k, **options: partial(fn, **options)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("vanilla", "loss", EqualWeighting),
        MethodSpec("uw", "loss", UncertaintyWeighting, trainable=True),
        MethodSpec("famo", "loss", FAMO, needs_update=True),
        MethodSpec("dwa", "loss", DWA),
        MethodSpec("pcgrad", "gradient", _function(pcgrad_weights)),
        MethodSpec("nash", "gradient", lambda k, **options: NashMTL(**options)),
        MethodSpec("mgda", "gradient", _function(mgda_weights)),
        MethodSpec("imtlg", "gradient", _function(imtlg_weights)),
        MethodSpec("cagrad", "gradient", _function(cagrad_weights)),
    )
}


def get_method(name: str) -> MethodSpec:
    """The spec of the method called `name`; raises ValueError listing the known names."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]
