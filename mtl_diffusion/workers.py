"""Worker processes for parallel runs: fresh, spawned, one BLAS thread each."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import torch


def default_jobs() -> int:
    """Worker processes for parallel runs: $MTL_DIFFUSION_JOBS, else the cores (at most 4)."""
    value = os.environ.get("MTL_DIFFUSION_JOBS")
    if value is None:
        return min(4, os.cpu_count() or 1)
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ValueError(f"MTL_DIFFUSION_JOBS must be an integer >= 1, got {value!r}")
    return jobs


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """`jobs` fresh (spawned, so safe inside Jupyter kernels) worker processes of one thread."""
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(jobs, mp_context=context, initializer=_one_thread)


def _one_thread() -> None:
    """Worker set-up: one BLAS/OpenMP thread and no per-run progress bars."""
    torch.set_num_threads(1)
    os.environ["MTL_DIFFUSION_QUIET"] = "1"
