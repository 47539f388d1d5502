"""Validation and conversion shared by the gradient-based methods (functions of G = g g^T)."""

from __future__ import annotations

import numpy as np
import torch

SYMMETRY_RTOL = 1e-5  # float32 rounding of g @ g.T stays far below this
# Smallest eigenvalue allowed, relative to the largest: float32 rounding of a Gramian of nearly
# parallel gradients can dip a little below zero; an indefinite matrix is no Gramian.
PSD_RTOL = 1e-4


def gramian_array(gramian: torch.Tensor, name: str = "gramian") -> np.ndarray:
    """A float64 NumPy copy of a k x k Gramian; raises ValueError unless square, finite,
    symmetric and positive semidefinite.

    Asymmetry up to SYMMETRY_RTOL * max|G| (rounding) is removed by symmetrising; eigenvalues
    down to -PSD_RTOL * (largest eigenvalue) are accepted as rounding.
    """
    g = torch.as_tensor(gramian).detach().to("cpu", torch.float64).numpy()
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square (k, k) matrix, got shape {g.shape}")
    if not np.isfinite(g).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    scale = np.abs(g).max()
    if np.abs(g - g.T).max() > SYMMETRY_RTOL * scale:
        raise ValueError(f"{name} must be symmetric (a Gramian g @ g.T)")
    g = 0.5 * (g + g.T)
    eigenvalues = np.linalg.eigvalsh(g)
    if eigenvalues[0] < -PSD_RTOL * max(eigenvalues[-1], 0.0) or eigenvalues[-1] < 0:
        raise ValueError(
            f"{name} must be positive semidefinite (a Gramian g @ g.T): its smallest eigenvalue "
            f"is {eigenvalues[0]:.3g}, its largest {eigenvalues[-1]:.3g}"
        )
    return g


def weights_like(weights: np.ndarray, gramian: torch.Tensor) -> torch.Tensor:
    """`weights` as a tensor on the Gramian's device, in its dtype when floating (else float32)."""
    ref = torch.as_tensor(gramian)
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    return torch.as_tensor(np.asarray(weights), dtype=dtype, device=ref.device)


def task_norms(g: np.ndarray, name: str = "gramian") -> np.ndarray:
    """||g_i|| = sqrt(G_ii); raises ValueError when a task gradient is zero."""
    diag = np.diag(g)
    if (diag <= 0).any():
        raise ValueError(
            f"{name} has a zero diagonal entry (task {int(np.argmin(diag))} has a zero "
            "gradient): this method needs every gradient nonzero"
        )
    return np.sqrt(diag)


def unit_scale(g: np.ndarray) -> np.ndarray:
    """G divided by its largest diagonal entry (for scale-invariant methods); zero G unchanged."""
    top = np.diag(g).max()
    return g / top if top > 0 else g
