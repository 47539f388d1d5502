"""Nash-MTL bargaining weights (Navon et al. 2022): alpha > 0 with alpha * (G alpha) = 1.

alpha_i (G alpha)_i = 1 is the stationarity condition of the convex function
phi(alpha) = 0.5 alpha^T G alpha - sum_i log alpha_i on alpha > 0 (its Hessian G + diag(alpha^-2)
is positive definite for a positive semidefinite G). phi is self-concordant, so damped Newton
(step 1 / (1 + Newton decrement)) stays positive and converges globally whenever a solution
exists. No solution exists when phi is unbounded below, e.g. a zero gradient or g_2 = -g_1.
"""

from __future__ import annotations

import numpy as np
import torch

from mtl_diffusion.mtl.gramian import gramian_array, weights_like


class NashSolveError(RuntimeError):
    """No positive alpha with alpha * (G alpha) = 1 could be found for this Gramian."""


def _initial_guess(g: np.ndarray) -> np.ndarray:
    """alpha = tau / ||g_i||, with tau minimising phi along that ray (exact for orthogonal g)."""
    diag = np.diag(g)
    if (diag <= 0).any():
        raise NashSolveError(
            f"G_ii <= 0 for task {int(np.argmin(diag))} (a zero gradient, or G is "
            "not a Gramian): no positive solution"
        )
    v = 1.0 / np.sqrt(diag)
    curvature = float(v @ g @ v)
    if curvature <= 0:
        raise NashSolveError("v^T G v <= 0 for a positive v: phi is unbounded, no solution")
    return v * np.sqrt(g.shape[0] / curvature)


def solve_nash(
    g: np.ndarray, init: np.ndarray | None = None, tol: float = 1e-10, max_iter: int = 100
) -> tuple[np.ndarray, int]:
    """Damped Newton on phi; returns (alpha, iterations). Raises NashSolveError on failure."""
    alpha = _initial_guess(g) if init is None else np.asarray(init, dtype=float).copy()
    for iteration in range(max_iter + 1):
        g_alpha = g @ alpha
        residual = np.abs(alpha * g_alpha - 1.0).max()
        if residual <= tol:
            return alpha, iteration
        gradient = g_alpha - 1.0 / alpha
        hessian = g + np.diag(alpha**-2.0)
        try:
            chol = np.linalg.cholesky(hessian)
        except np.linalg.LinAlgError as err:
            raise NashSolveError(
                "G + diag(alpha^-2) is not positive definite: the Gramian is "
                "not positive semidefinite"
            ) from err
        step = np.linalg.solve(chol.T, np.linalg.solve(chol, gradient))
        decrement = float(np.sqrt(max(gradient @ step, 0.0)))
        alpha = alpha - step / (1.0 + decrement) if decrement > 0.25 else alpha - step
        if not (np.isfinite(alpha).all() and (alpha > 0).all()):
            raise NashSolveError("Newton iterate left alpha > 0 (no positive solution?)")
    raise NashSolveError(
        f"residual max|alpha * (G alpha) - 1| = {residual:.3g} > tol={tol:g} "
        f"after max_iter={max_iter} Newton steps (no positive solution?)"
    )


def nash_weights(
    gramian: torch.Tensor,
    init: torch.Tensor | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> torch.Tensor:
    """alpha > 0 with alpha * (gramian @ alpha) = 1 elementwise, for the Gramian as given.

    No normalisation inside: alpha scales as 1 / sqrt(s) when G is scaled by s (so does the
    published method's alpha; see NashMTL). `init` warm-starts Newton (positive, shape (k,)); `tol`
    bounds the final residual max|alpha * (G alpha) - 1|. Raises NashSolveError when it cannot
    solve (non-finite, indefinite, or singular G without a positive solution), never falls back.
    """
    if not torch.isfinite(torch.as_tensor(gramian)).all():
        raise NashSolveError("gramian has non-finite entries")
    g = gramian_array(gramian)
    start = None
    if init is not None:
        start = torch.as_tensor(init).detach().to("cpu", torch.float64).numpy()
        if start.shape != (g.shape[0],) or not (start > 0).all() or not np.isfinite(start).all():
            raise ValueError(f"init must be a positive finite vector of shape ({g.shape[0]},)")
    alpha, _ = solve_nash(g, start, tol=tol, max_iter=max_iter)
    return weights_like(alpha, gramian)


class NashMTL:
    """Nash-MTL as published (Navon et al. 2022; also ANT): alpha > 0 with
    alpha_i (G alpha)_i = 1 on the RAW Gramian, warm-started from the last solution.

    The published code divides G by n = ||G||_F before its solver but multiplies alpha by n
    inside the constraint, so the normalisation cancels and its alpha solves the raw system.
    Here Newton runs on G / n (well scaled) and alpha = alpha_n / sqrt(n) (the same solution).
    The caller clips the update sum_i alpha_i g_i (published max norm: 1).
    """

    def __init__(self, tol: float = 1e-10, max_iter: int = 100) -> None:
        self.tol, self.max_iter = tol, max_iter
        self.alpha: torch.Tensor | None = None  # solves the raw system
        self.scaled_alpha: torch.Tensor | None = None  # solves the system on G / ||G||_F

    def __call__(self, gramian: torch.Tensor) -> torch.Tensor:
        """Weights alpha for the update sum_i alpha_i g_i."""
        g = torch.as_tensor(gramian)
        norm = torch.linalg.matrix_norm(g.double())
        if not (torch.isfinite(norm) and norm > 0):
            raise NashSolveError(f"gramian must have a positive finite norm, got {norm.item()}")
        init = self.scaled_alpha
        if init is not None and init.numel() != len(g):
            init = None
        self.scaled_alpha = nash_weights(
            g / norm.to(g.dtype), init=init, tol=self.tol, max_iter=self.max_iter
        )
        self.alpha = self.scaled_alpha / torch.sqrt(norm).to(self.scaled_alpha.dtype)
        return self.alpha
