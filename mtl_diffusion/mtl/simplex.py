"""Minimising a smooth convex function over the probability simplex {w >= 0, sum w = 1}.

Accelerated projected gradient (FISTA with backtracking and adaptive restart, using the exact
Euclidean projection onto the simplex) finds the support of the minimiser; once the support is
stable, Newton steps restricted to that face (equality-constrained, through the KKT system)
finish the job. The stopping rule is the Frank-Wolfe duality gap
grad f(w) . w - min_i grad f(w)_i, an upper bound on f(w) - min f, so `tol` bounds the
suboptimality of the returned objective value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]
Hessian = Callable[[np.ndarray], np.ndarray]


class SimplexSolveError(RuntimeError):
    """The simplex solver did not reach its tolerance."""


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of `v` onto the probability simplex (sort-based, exact)."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    ranks = np.arange(1, v.size + 1)
    rho = np.nonzero(u - cumulative / ranks > 0)[0][-1]
    return np.maximum(v - cumulative[rho] / (rho + 1), 0.0)


def frank_wolfe_gap(w: np.ndarray, grad: np.ndarray) -> float:
    """grad . w - min_i grad_i: >= f(w) - min f over the simplex for convex f."""
    return float(grad @ w - grad.min())


def _face_newton(
    fun: Objective, hessian: Hessian, x: np.ndarray, tol: float, steps: int = 30
) -> np.ndarray | None:
    """Newton on the face {w_i = 0 off the support of x}; the point once its gap <= tol.

    None when a step would leave the simplex or fail to decrease f (the support is wrong).
    """
    face = x > 0
    m = int(face.sum())
    for _ in range(steps):
        f, grad = fun(x)
        if frank_wolfe_gap(x, grad) <= tol:
            return x
        kkt = np.zeros((m + 1, m + 1))
        kkt[:m, :m] = hessian(x)[np.ix_(face, face)]
        kkt[:m, m] = kkt[m, :m] = 1.0
        rhs = np.append(-grad[face], 0.0)
        trial = x.copy()
        trial[face] += np.linalg.lstsq(kkt, rhs, rcond=None)[0][:m]
        if (trial[face] <= 0).any() or fun(trial)[0] > f + 1e-13 * max(1.0, abs(f)):
            return None
        x = trial
    return None


def minimize_on_simplex(
    fun: Objective,
    hessian: Hessian,
    k: int,
    tol: float = 1e-12,
    max_iter: int = 20_000,
    lipschitz: float = 1.0,
) -> np.ndarray:
    """argmin over the simplex of the convex `fun` (value and gradient), with its `hessian`.

    `lipschitz` is a first guess of the gradient's Lipschitz constant (backtracking raises it);
    `tol` is the absolute Frank-Wolfe gap to reach. Raises SimplexSolveError after `max_iter`.
    """
    x = np.full(k, 1.0 / k)
    fx, gx = fun(x)
    y, fy, gy, t, step_l = x, fx, gx, 1.0, float(lipschitz)
    polished = None
    for _ in range(max_iter):
        if frank_wolfe_gap(x, gx) <= tol:
            return x
        while True:
            x_new = project_simplex(y - gy / step_l)
            f_new, g_new = fun(x_new)
            diff = x_new - y
            slack = 1e-13 * max(1.0, abs(fy))  # rounding, so that backtracking terminates
            if f_new <= fy + gy @ diff + 0.5 * step_l * (diff @ diff) + slack:
                break
            step_l *= 2.0
        if f_new > fx and t > 1.0:  # the momentum overshot: restart from x
            y, fy, gy, t = x, fx, gx, 1.0
            continue
        support = tuple(x_new > 0)
        if support == tuple(x > 0) and support != polished:  # stable support: try Newton on it
            polished = support
            done = _face_newton(fun, hessian, x_new, tol)
            if done is not None:
                return done
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        y = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, fx, gx, t = x_new, f_new, g_new, t_new
        fy, gy = fun(y)
    raise SimplexSolveError(
        f"no convergence in max_iter={max_iter} iterations (Frank-Wolfe gap "
        f"{frank_wolfe_gap(x, gx):.3g} > tol={tol:g})"
    )
