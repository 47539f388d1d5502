"""Per-timestep loss weights against their formulas, written out independently with loops."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_diffusion.weighting import constant_weight, loss_weight, min_snr_weight, p2_weight

SNR = torch.tensor([1e-4, 0.1, 0.7, 1.0, 4.99, 5.0, 5.01, 30.0, 1e4], dtype=torch.float64)


def _min_snr_reference(snr: float, gamma: float, prediction: str) -> float:
    m = min(snr, gamma)
    return {"x0": m, "eps": m / snr, "v": m / (snr + 1.0)}[prediction]


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_min_snr_matches_formula(prediction: str, gamma: float) -> None:
    got = min_snr_weight(SNR, gamma=gamma, prediction=prediction)
    want = [_min_snr_reference(s, gamma, prediction) for s in SNR.tolist()]
    assert got.shape == SNR.shape and got.dtype == torch.float64
    assert got.tolist() == pytest.approx(want, rel=1e-12)


def test_p2_matches_formula() -> None:
    for gamma, k in [(0.5, 1.0), (1.0, 1.0), (1.0, 0.3)]:
        got = p2_weight(SNR, gamma=gamma, k=k)
        want = [1.0 / (k + s) ** gamma for s in SNR.tolist()]
        assert got.tolist() == pytest.approx(want, rel=1e-12)


def test_constant_and_dispatch() -> None:
    snr = SNR.reshape(3, 3).float()
    assert torch.equal(constant_weight(snr), torch.ones(3, 3))
    assert torch.equal(loss_weight("constant", snr), torch.ones(3, 3))
    assert torch.equal(
        loss_weight("min_snr", snr, gamma=2.0, prediction="v"),
        min_snr_weight(snr, gamma=2.0, prediction="v"),
    )
    assert torch.equal(loss_weight("p2", snr, gamma=0.5), p2_weight(snr, gamma=0.5))


def test_zero_and_infinite_snr_are_finite_limits() -> None:
    snr = torch.tensor([0.0, 1e-300, math.inf], dtype=torch.float64)
    eps = min_snr_weight(snr, gamma=5.0, prediction="eps")
    x0 = min_snr_weight(snr, gamma=5.0, prediction="x0")
    v = min_snr_weight(snr, gamma=5.0, prediction="v")
    p2 = p2_weight(snr, gamma=1.0, k=1.0)
    for w in (eps, x0, v, p2):
        assert not torch.isnan(w).any() and torch.isfinite(w).all()
    # Limits as SNR -> 0: min(SNR,g)/SNR -> 1, min(SNR,g) -> 0, min(SNR,g)/(SNR+1) -> 0, P2 -> 1/k.
    assert eps.tolist() == [1.0, 1.0, 0.0]
    assert x0.tolist() == [0.0, 1e-300, 5.0]
    assert v.tolist()[0] == 0.0 and v.tolist()[2] == 0.0
    assert p2.tolist() == [1.0, 1.0, 0.0]


def test_min_snr_weights_express_one_effective_loss() -> None:
    """x0-MSE * min(SNR, g) == eps-MSE * w_eps == v-MSE * w_v for one prediction in 3 forms."""
    gen = torch.Generator().manual_seed(0)
    n, d = 64, 16
    alpha_bar = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 0.998 + 0.001
    x0 = torch.randn(n, d, generator=gen, dtype=torch.float64)
    eps = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x0_hat = x0 + 0.3 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    x_t = a * x0 + s * eps
    eps_hat = (x_t - a * x0_hat) / s  # the eps a model predicting x0_hat implies
    v, v_hat = a * eps - s * x0, a * eps_hat - s * x0_hat
    mse = lambda p, q: ((p - q) ** 2).mean(dim=1)  # noqa: E731
    snr = (alpha_bar / (1 - alpha_bar)).squeeze(1)
    mse_x0, mse_eps, mse_v = mse(x0, x0_hat), mse(eps, eps_hat), mse(v, v_hat)
    torch.testing.assert_close(mse_eps, snr * mse_x0)
    torch.testing.assert_close(mse_v, (snr + 1) * mse_x0)
    effective = mse_x0 * min_snr_weight(snr, 5.0, "x0")
    torch.testing.assert_close(mse_eps * min_snr_weight(snr, 5.0, "eps"), effective)
    torch.testing.assert_close(mse_v * min_snr_weight(snr, 5.0, "v"), effective)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: min_snr_weight(SNR, prediction="score"), "prediction must be one of"),
        (lambda: min_snr_weight(SNR, gamma=0.0), "gamma"),
        (lambda: p2_weight(SNR, k=0.0), "k must be > 0"),
        (lambda: p2_weight(SNR, gamma=-1.0), "gamma"),
        (lambda: loss_weight("edm", SNR), "name must be one of"),
        (lambda: constant_weight(torch.tensor([1.0, -0.5])), "snr"),
        (lambda: constant_weight(torch.tensor([math.nan])), "snr"),
    ],
)
def test_bad_input_raises(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
