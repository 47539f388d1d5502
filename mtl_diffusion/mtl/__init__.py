"""Multi-task learning methods: cluster losses (and per-cluster gradient Gramians) -> weights,
and the engine that turns a batch with cluster ids into an objective for your own backward."""

from __future__ import annotations

from mtl_diffusion.mtl.batch import DenoisingBatch, interleaved_clusters
from mtl_diffusion.mtl.cagrad import cagrad_weights
from mtl_diffusion.mtl.cluster_gradients import ClusterGradients, cluster_gradients
from mtl_diffusion.mtl.distributed import RankAverage, Ranks, broadcast_state, current_ranks, shard
from mtl_diffusion.mtl.dwa import DWA, EqualWeighting
from mtl_diffusion.mtl.engine import (
    EngineStep,
    FastPathMismatchError,
    MTLEngine,
    NonFiniteLossError,
)
from mtl_diffusion.mtl.famo import FAMO
from mtl_diffusion.mtl.fast_path import FastPathError
from mtl_diffusion.mtl.imtlg import imtlg_weights
from mtl_diffusion.mtl.mgda import mgda_weights
from mtl_diffusion.mtl.nash import NashMTL, NashSolveError, nash_weights
from mtl_diffusion.mtl.pcgrad import pcgrad_weights
from mtl_diffusion.mtl.registry import KINDS, METHODS, MethodSpec, get_method
from mtl_diffusion.mtl.simplex import SimplexSolveError, minimize_on_simplex, project_simplex
from mtl_diffusion.mtl.uncertainty import UncertaintyWeighting

__all__ = [
    "ClusterGradients",
    "DenoisingBatch",
    "EngineStep",
    "FastPathError",
    "FastPathMismatchError",
    "MTLEngine",
    "NonFiniteLossError",
    "RankAverage",
    "Ranks",
    "broadcast_state",
    "current_ranks",
    "shard",
    "cluster_gradients",
    "interleaved_clusters",
    "DWA",
    "FAMO",
    "KINDS",
    "METHODS",
    "EqualWeighting",
    "MethodSpec",
    "NashMTL",
    "NashSolveError",
    "SimplexSolveError",
    "UncertaintyWeighting",
    "cagrad_weights",
    "get_method",
    "imtlg_weights",
    "mgda_weights",
    "minimize_on_simplex",
    "nash_weights",
    "pcgrad_weights",
    "project_simplex",
]
