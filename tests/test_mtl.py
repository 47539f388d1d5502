"""MTL weightings against independent references built on explicit gradient vectors g (k x d)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mtl_diffusion.mtl import (
    DWA,
    FAMO,
    METHODS,
    EqualWeighting,
    NashMTL,
    NashSolveError,
    UncertaintyWeighting,
    cagrad_weights,
    get_method,
    imtlg_weights,
    mgda_weights,
    nash_weights,
    pcgrad_weights,
    project_simplex,
)

D = 20


def grads(k: int, seed: int, conflict: bool = True) -> torch.Tensor:
    """k float64 gradients in R^D with varied norms; `conflict` makes the odd ones oppose g_0."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(k, D, generator=gen, dtype=torch.float64)
    if conflict:
        g[1::2] = 0.5 * g[1::2] - g[0]
    return g * (0.2 + 3 * torch.rand(k, 1, generator=gen, dtype=torch.float64))


def simplex_grid(k: int, n: int) -> torch.Tensor:
    """All points of the simplex in R^k with coordinates in multiples of 1 / n (k = 2 or 3)."""
    if k == 2:
        a = torch.arange(n + 1, dtype=torch.float64) / n
        return torch.stack([a, 1 - a], dim=1)
    pts = [(i, j, n - i - j) for i in range(n + 1) for j in range(n + 1 - i)]
    return torch.tensor(pts, dtype=torch.float64) / n


# ---------------------------------------------------------------- PCGrad


def pcgrad_direct(g: torch.Tensor, order: list[list[int]]) -> torch.Tensor:
    """PCGrad as published, on the explicit vectors: sum_i of pc_i projected on original g_j."""
    total = torch.zeros_like(g[0])
    for i in range(len(g)):
        pc = g[i].clone()
        for j in order[i]:
            dot = pc @ g[j]
            if dot < 0:
                pc = pc - dot / (g[j] @ g[j]) * g[j]
        total += pc
    return total


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_pcgrad_matches_direct_transcription(k: int) -> None:
    rng = np.random.default_rng(k)
    for seed in range(4):
        g = grads(k, seed)
        assert (g @ g.T < 0).any()  # conflicting gradients present
        order = [
            [int(j) for j in rng.permutation([j for j in range(k) if j != i])] for i in range(k)
        ]
        w = pcgrad_weights(g @ g.T, order=order)
        torch.testing.assert_close(w @ g, pcgrad_direct(g, order), rtol=1e-10, atol=1e-10)


def test_pcgrad_random_order_is_one_valid_order_and_seeded() -> None:
    g = grads(3, 7)
    G = g @ g.T
    w = pcgrad_weights(G, generator=torch.Generator().manual_seed(3))
    again = pcgrad_weights(G, generator=torch.Generator().manual_seed(3))
    assert torch.equal(w, again)
    choices = [[(1, 2), (2, 1)], [(0, 2), (2, 0)], [(0, 1), (1, 0)]]
    candidates = [
        pcgrad_direct(g, [list(o) for o in combo]) for combo in itertools.product(*choices)
    ]
    assert min((w @ g - c).abs().max().item() for c in candidates) < 1e-10


def test_pcgrad_hand_example_and_zero_gradient() -> None:
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # pc_1 = g1 - (-1) g2 = 0, pc_2 = 0, pc_3 = g3: weights (2, 2, 1) give 2 g1 + 2 g2 + g3 = g3.
    w = pcgrad_weights(g @ g.T, order=[[1, 2], [0, 2], [0, 1]])
    assert w.tolist() == [2.0, 2.0, 1.0]
    g0 = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    assert pcgrad_weights(g0 @ g0.T, order=[[1], [0]]).tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("k", "order"),
    [(2, [[1], [1]]), (3, [[1, 2], [0]]), (2, [[1]]), (3, [[1, 2], [0, 2], [0, 0]])],
)
def test_pcgrad_bad_order(k: int, order: list[list[int]]) -> None:
    with pytest.raises(ValueError, match="order"):
        pcgrad_weights(torch.eye(k), order=order)


# ---------------------------------------------------------------- Nash-MTL


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_nash_solves_bargaining_system(k: int) -> None:
    for seed in range(3):
        g = grads(k, seed, conflict=seed == 0)
        G = g @ g.T
        for gram in (G, G / torch.linalg.matrix_norm(G)):
            alpha = nash_weights(gram)
            assert (alpha > 0).all()
            assert (alpha * (gram @ alpha) - 1).abs().max() < 1e-9


def test_nash_orthogonal_closed_form_and_scaling() -> None:
    q, _ = torch.linalg.qr(
        torch.randn(D, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    )
    norms = torch.tensor([0.1, 1.0, 3.0, 20.0], dtype=torch.float64)
    g = (q * norms).T  # orthogonal rows with the given norms
    alpha = nash_weights(g @ g.T)
    torch.testing.assert_close(alpha, 1 / norms, rtol=1e-9, atol=0)
    G = grads(4, 1) @ grads(4, 1).T
    for s in (1e-6, 7.0, 1e4):
        torch.testing.assert_close(
            nash_weights(s * G), nash_weights(G) / math.sqrt(s), rtol=1e-8, atol=0
        )


def test_nash_keeps_dtype_and_warm_start() -> None:
    g = grads(4, 2).float()
    alpha = nash_weights(g @ g.T)
    assert alpha.dtype == torch.float32
    warm = nash_weights(g @ g.T, init=alpha * 1.3, tol=1e-6)
    torch.testing.assert_close(warm, alpha, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    "gram",
    [
        [[1.0, -1.0], [-1.0, 1.0]],  # g2 = -g1: singular, no positive solution
        [[1.0, 0.0], [0.0, 0.0]],  # a zero gradient
        [[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],  # unbounded along (1, 1, 0)
        [[1.0, math.nan], [math.nan, 1.0]],
        [[1.0, math.inf], [math.inf, 1.0]],
    ],
)
def test_nash_raises_when_unsolvable(gram: list[list[float]]) -> None:
    with pytest.raises(NashSolveError):
        nash_weights(torch.tensor(gram, dtype=torch.float64))


@pytest.mark.parametrize(
    "weights", [nash_weights, mgda_weights, imtlg_weights, cagrad_weights, pcgrad_weights]
)
@pytest.mark.parametrize(
    "gram",
    [
        [[1.0, 0.0], [0.0, -1.0]],  # a negative diagonal
        [[1.0, 2.0], [2.0, 1.0]],  # indefinite: eigenvalues 3 and -1 (MGDA would maximise)
    ],
)
def test_gramian_weightings_refuse_a_matrix_that_is_no_gramian(weights, gram) -> None:
    with pytest.raises(ValueError, match="positive semidefinite"):
        weights(torch.tensor(gram, dtype=torch.float64))


def test_gramian_weightings_accept_float32_rounding_of_parallel_gradients() -> None:
    g = torch.randn(1, 100_000, generator=torch.Generator().manual_seed(0)).repeat(4, 1)
    g = g * torch.tensor([[1.0], [2.0], [3.0], [4.0]])  # rank one: zero eigenvalues, rounded
    gram = g @ g.T
    mgda_weights(gram)
    pcgrad_weights(gram, generator=torch.Generator().manual_seed(0))


def test_nash_mtl_solves_the_raw_gramian_as_published() -> None:
    """The published constraint log(alpha_i n) + log((G / n) alpha)_i >= 0 is
    alpha_i (G alpha)_i >= 1 on the raw G: the normalisation by n = ||G||_F cancels."""
    g = 30.0 * grads(5, 3)
    G = g @ g.T
    method = NashMTL()
    alpha = method(G)
    torch.testing.assert_close(alpha * (G @ alpha), torch.ones(5, dtype=G.dtype), rtol=1e-8, atol=0)
    n = torch.linalg.matrix_norm(G)
    torch.testing.assert_close(alpha * n * ((G / n) @ alpha), torch.ones(5, dtype=G.dtype))
    torch.testing.assert_close(method(4.0 * G), alpha / 2.0, rtol=1e-8, atol=0)  # warm-started


# ---------------------------------------------------------------- MGDA


def test_mgda_two_tasks_closed_form() -> None:
    for seed in range(6):
        g = grads(2, seed, conflict=seed % 2 == 0)
        w = mgda_weights(g @ g.T)
        g1, g2 = g
        w1 = float(((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2))).clamp(0, 1))
        torch.testing.assert_close(
            w, torch.tensor([w1, 1 - w1], dtype=torch.float64), atol=1e-8, rtol=0
        )


def test_mgda_beats_dense_grid_for_three_tasks() -> None:
    grid = simplex_grid(3, 300)
    for seed in range(4):
        g = grads(3, seed)
        w = mgda_weights(g @ g.T)
        assert (w >= 0).all() and abs(w.sum().item() - 1) < 1e-12
        best = ((grid @ g) ** 2).sum(dim=1).min()
        value = ((w @ g) ** 2).sum()
        assert value <= best + 1e-12
        assert best - value < 1e-3 * (g**2).sum(dim=1).max()


@pytest.mark.parametrize("k", [4, 6, 25])
def test_mgda_kkt_conditions(k: int) -> None:
    g = grads(k, k)  # k = 25 > D: a singular Gramian
    w = mgda_weights(g @ g.T)
    d = w @ g
    scale = (g**2).sum(dim=1).max()
    # Optimal iff g_i . d >= ||d||^2 for all i, with equality where w_i > 0.
    slack = g @ d - d @ d
    assert (slack >= -1e-9 * scale).all()
    assert (w * slack).abs().max() < 1e-9 * scale


# ---------------------------------------------------------------- IMTL-G


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_imtlg_equal_projections(k: int) -> None:
    for seed in range(4):
        g = grads(k, seed, conflict=seed % 2 == 0)
        w = imtlg_weights(g @ g.T)
        assert abs(w.sum().item() - 1) < 1e-10
        d = w @ g
        projections = g @ d / g.norm(dim=1)
        torch.testing.assert_close(projections, projections[0].expand(k), rtol=1e-8, atol=1e-10)
        # Second derivation: G w = lambda ||g||  =>  w proportional to G^{-1} ||g||.
        other = torch.linalg.solve(g @ g.T, g.norm(dim=1))
        torch.testing.assert_close(w, other / other.sum(), rtol=1e-7, atol=1e-9)


def test_imtlg_rejects_zero_gradient() -> None:
    with pytest.raises(ValueError, match="zero gradient"):
        imtlg_weights(torch.diag(torch.tensor([1.0, 0.0, 2.0])))


# ---------------------------------------------------------------- CAGrad


def cagrad_objective(w: torch.Tensor, g: torch.Tensor, c: float) -> torch.Tensor:
    """g_w . g0 + c ||g0|| ||g_w|| for a batch of w (n, k), on the explicit vectors."""
    g0 = g.mean(dim=0)
    gw = w @ g
    return gw @ g0 + c * g0.norm() * gw.norm(dim=-1)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("c", [0.2, 0.4, 0.9])
def test_cagrad_update_and_optimality(k: int, c: float) -> None:
    grid = simplex_grid(k, 2000 if k == 2 else 300)
    for seed in range(3):
        g = grads(k, seed)
        w_prime = cagrad_weights(g @ g.T, c=c)
        # Recover the inner w: w' = 1/k + c ||g0|| w / ||g_w|| with sum(w) = 1.
        w = (w_prime - 1 / k) / (w_prime - 1 / k).sum()
        assert (w >= -1e-10).all()
        g0, gw = g.mean(dim=0), w @ g
        torch.testing.assert_close(
            w_prime @ g, g0 + c * g0.norm() * gw / gw.norm(), rtol=1e-9, atol=1e-9
        )
        value, best = cagrad_objective(w, g, c), cagrad_objective(grid, g, c).min()
        assert value <= best + 1e-10
        assert best - value < 1e-3 * (g**2).sum(dim=1).max()
        rescaled = cagrad_weights(g @ g.T, c=c, rescale=True)
        torch.testing.assert_close(rescaled, w_prime / (1 + c**2))


# A Gramian recorded at step 326 of a cpu-profile CAGrad run (U-Net, 5 SNR clusters, float32).
RECORDED = [
    [0.0377143510, 0.0007290847, 0.0008955786, 0.0006654375, 0.0007181306],
    [0.0007290847, 0.0059187403, -0.0000352770, 0.0012444354, 0.0002396482],
    [0.0008955786, -0.0000352770, 0.0013858975, 0.0002063621, 0.0005194930],
    [0.0006654375, 0.0012444354, 0.0002063621, 0.0040685968, 0.0009001943],
    [0.0007181306, 0.0002396482, 0.0005194930, 0.0009001943, 0.0011202067],
]


@pytest.mark.parametrize("ratio", [1.0, 100.0, 300.0, 1000.0])
@pytest.mark.parametrize("c", [0.4, 0.5])
def test_cagrad_solves_gradients_whose_norms_differ_by_orders_of_magnitude(
    ratio: float, c: float
) -> None:
    """The recorded Gramian with the high-norm cluster's gradient scaled by `ratio` (the
    simplex solver alone stalled at 100x), against scipy's SLSQP on the same dual (what the
    CAGrad authors' code solves), started from every vertex and the centre."""
    minimize = pytest.importorskip("scipy.optimize").minimize
    k = 5
    scale = torch.ones(k, dtype=torch.float64)
    scale[0] = ratio
    gram = (scale[:, None] * torch.tensor(RECORDED, dtype=torch.float64) * scale).float().double()
    w_prime = cagrad_weights(gram, c=c).double()
    G = (gram.double() / gram.diagonal().max()).numpy()
    mean = np.full(k, 1.0 / k)
    b, radius = G @ mean, c * float(np.sqrt(mean @ G @ mean))

    def dual(w: np.ndarray) -> float:
        return float(b @ w + radius * np.sqrt(max(w @ G @ w, 0.0)))

    starts = [np.eye(k)[i] for i in range(k)] + [mean]
    best = min(
        minimize(
            dual,
            x0,
            method="SLSQP",
            bounds=[(0, 1)] * k,
            tol=1e-15,
            constraints={"type": "eq", "fun": lambda w: w.sum() - 1},
        ).fun
        for x0 in starts
    )
    w = ((w_prime - 1 / k) / (w_prime - 1 / k).sum()).numpy()
    assert (w >= 0).all() and dual(w) <= best + 1e-9 * (abs(best) + radius)


def test_cagrad_limits() -> None:
    g = grads(4, 0)
    assert torch.allclose(cagrad_weights(g @ g.T, c=0.0), torch.full((4,), 0.25, dtype=g.dtype))
    opposite = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    assert cagrad_weights(opposite @ opposite.T).tolist() == [0.5, 0.5]  # g0 = 0
    # The origin is the best point of the hull (w = (1/2, 1/2, 0)): no conflict-averse term.
    hull = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(cagrad_weights(hull @ hull.T), torch.full((3,), 1 / 3).double())
    with pytest.raises(ValueError, match="c must be"):
        cagrad_weights(g @ g.T, c=-0.1)


# ---------------------------------------------------------------- shared pieces


def test_project_simplex_against_brute_force_grid() -> None:
    rng = np.random.default_rng(0)
    grid = simplex_grid(3, 400).numpy()
    for _ in range(5):
        v = rng.normal(size=3) * 2
        p = project_simplex(v)
        assert p.min() >= 0 and abs(p.sum() - 1) < 1e-12
        assert ((p - v) ** 2).sum() <= ((grid - v) ** 2).sum(axis=1).min() + 1e-12


@pytest.mark.parametrize(
    "fn", [pcgrad_weights, nash_weights, mgda_weights, imtlg_weights, cagrad_weights]
)
def test_gramian_validation(fn) -> None:
    with pytest.raises(ValueError, match="gramian"):
        fn(torch.ones(2, 3))
    with pytest.raises(ValueError, match="symmetric"):
        fn(torch.tensor([[1.0, 0.5], [0.0, 1.0]]))


# ---------------------------------------------------------------- uncertainty weighting


def test_uw_forward_weights_and_param_group() -> None:
    uw = UncertaintyWeighting(3).double()
    with torch.no_grad():
        uw.s.copy_(torch.tensor([0.5, -1.0, 2.0]))
    losses = torch.tensor([1.5, 0.2, 3.0], dtype=torch.float64)
    want = sum(
        0.5 * (math.exp(-s) * L + s) for s, L in zip([0.5, -1.0, 2.0], [1.5, 0.2, 3.0], strict=True)
    )
    assert uw(losses).item() == pytest.approx(want, rel=1e-12)
    assert uw.weights().tolist() == pytest.approx([0.5 * math.exp(-s) for s in [0.5, -1.0, 2.0]])
    group = uw.param_group()
    assert group["lr"] == 0.025 and group["weight_decay"] == 0.0 and group["params"][0] is uw.s
    assert UncertaintyWeighting(4).s.tolist() == [0.0] * 4


def test_uw_gradient_by_finite_differences() -> None:
    uw = UncertaintyWeighting(3).double()
    losses = torch.tensor([1.5, 0.2, 3.0], dtype=torch.float64, requires_grad=True)
    uw(losses).backward()
    h = 1e-6
    for i in range(3):
        with torch.no_grad():
            uw.s[i] += h
            up = uw(losses).item()
            uw.s[i] -= 2 * h
            down = uw(losses).item()
            uw.s[i] += h
        assert uw.s.grad[i].item() == pytest.approx((up - down) / (2 * h), rel=1e-7)
    torch.testing.assert_close(losses.grad, uw.weights())


def test_uw_learns_inverse_loss_weights() -> None:
    losses = torch.tensor([0.05, 0.3, 1.0, 2.5])
    uw = UncertaintyWeighting(4)
    opt = torch.optim.Adam([uw.param_group(lr=0.05)])
    for _ in range(400):
        opt.zero_grad()
        uw(losses).backward()
        opt.step()
    torch.testing.assert_close(uw.weights(), 1 / (2 * losses), rtol=1e-2, atol=0)


def test_uw_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="losses"):
        UncertaintyWeighting(3)(torch.ones(2))


# ---------------------------------------------------------------- FAMO


def softmax(xs: list[float]) -> list[float]:
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def test_famo_weights_give_paper_direction() -> None:
    """sum_i w_i grad L_i == grad of c sum_i z_i log L_i (c detached) on a toy model."""
    famo = FAMO(3).double()
    with torch.no_grad():
        famo.xi.copy_(torch.tensor([0.3, -0.2, 0.1]))
    theta = torch.randn(
        5, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True
    )
    a = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    losses = (a * theta).sum(dim=1) ** 2 + 0.1
    w = famo.weights(losses)
    assert (w > 0).all() and abs(w.sum().item() - 1) < 1e-12
    (grad_w,) = torch.autograd.grad((w * losses).sum(), theta, retain_graph=True)
    z = torch.softmax(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64), dim=0)
    c = 1 / (z / losses.detach()).sum()
    (grad_paper,) = torch.autograd.grad(c * (z * losses.log()).sum(), theta)
    torch.testing.assert_close(grad_w, grad_paper)


def test_famo_sgd_matches_algorithm_by_hand() -> None:
    lr, gamma = 0.1, 0.01
    famo = FAMO(2, lr=lr, gamma=gamma, optimizer="sgd").double()
    steps = [([2.0, 0.5], [1.0, 0.4]), ([1.0, 0.4], [0.9, 0.2])]
    xi = [0.0, 0.0]
    for step, (before, after) in enumerate(steps):
        z = softmax(xi)
        c = 1 / sum(zi / li for zi, li in zip(z, before, strict=True))
        w = famo.weights(torch.tensor(before, dtype=torch.float64))
        assert w.tolist() == pytest.approx(
            [c * zi / li for zi, li in zip(z, before, strict=True)], rel=1e-12
        )
        famo.update(torch.tensor(after, dtype=torch.float64))
        delta = [math.log(b) - math.log(a) for b, a in zip(before, after, strict=True)]
        # d(z . delta)/d xi_j = z_j (delta_j - z . delta)
        zd = sum(zi * di for zi, di in zip(z, delta, strict=True))
        xi = [x - lr * (zj * (dj - zd) + gamma * x) for x, zj, dj in zip(xi, z, delta, strict=True)]
        assert famo.xi.tolist() == pytest.approx(xi, rel=1e-12, abs=1e-15)
        if step == 0:  # task 0's log loss fell faster: it loses weight
            assert xi[0] < xi[1]


def test_famo_adam_first_step_by_hand() -> None:
    famo = FAMO(2).double()  # Adam, lr 0.025, weight decay 1e-3
    famo.weights(torch.tensor([2.0, 0.5], dtype=torch.float64))
    famo.update(torch.tensor([1.0, 0.4], dtype=torch.float64))
    # First Adam step with bias correction: xi -= lr * g / (|g| + eps), g = J^T delta at xi = 0.
    dd = math.log(2.0) - math.log(1.25)
    grad = [0.25 * dd, -0.25 * dd]
    want = [-0.025 * gi / (abs(gi) + 1e-8) for gi in grad]
    assert famo.xi.tolist() == pytest.approx(want, rel=1e-9)


def test_famo_usage_errors() -> None:
    famo = FAMO(2)
    with pytest.raises(RuntimeError, match="before update"):
        famo.update(torch.ones(2))
    with pytest.raises(ValueError, match="losses"):
        famo.weights(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="optimizer"):
        FAMO(2, optimizer="rmsprop")


# ---------------------------------------------------------------- DWA and equal weighting


def test_dwa_by_hand() -> None:
    dwa = DWA(2, temperature=2.0)
    history = [[1.0, 2.0], [0.5, 1.8], [0.4, 1.0]]
    assert dwa.weights(torch.tensor(history[0])).tolist() == [1.0, 1.0]
    assert dwa.weights(torch.tensor(history[1])).tolist() == [1.0, 1.0]
    r = [0.5 / 1.0, 1.8 / 2.0]
    want = [2 * v for v in softmax([ri / 2.0 for ri in r])]
    assert dwa.weights(torch.tensor(history[2])).tolist() == pytest.approx(want, rel=1e-6)
    assert EqualWeighting(3).weights(torch.tensor([0.1, 2.0, 5.0])).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="losses"):
        dwa.weights(torch.tensor([0.0, 1.0]))


# ---------------------------------------------------------------- registry


def test_registry_builds_and_calls_every_method() -> None:
    names = {"vanilla", "uw", "pcgrad", "nash", "mgda", "imtlg", "cagrad", "famo", "dwa"}
    assert set(METHODS) == names
    g = grads(3, 0)
    G, losses = g @ g.T, torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    for name in sorted(names):
        spec = get_method(name)
        method = spec.build(3)
        if spec.kind == "gradient":
            w = method(G)
        elif spec.trainable:
            w = method.double()(losses).reshape(1)
        else:
            w = method.weights(losses)
            if spec.needs_update:
                method.update(0.9 * losses)
        assert torch.isfinite(w).all(), name
    assert get_method("uw").trainable and get_method("famo").needs_update
    assert get_method("cagrad").build(3, c=0.0)(G).tolist() == pytest.approx([1 / 3] * 3)


def test_registry_unknown_name() -> None:
    with pytest.raises(ValueError, match="method must be one of .*'cagrad'"):
        get_method("gradnorm")
