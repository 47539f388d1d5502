"""ScoreCL: losses against loop transcriptions of their formulas, pair weights, augmentations,
the score network's training, k-NN against brute force, and the SSL loop's determinism."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_diffusion.builders import schedule_from_config
from mtl_diffusion.config import apply
from mtl_diffusion.data import load_digits_split
from mtl_diffusion.diffusion import per_sample_loss
from mtl_diffusion.models import build_model
from mtl_diffusion.scorecl import (
    AUGMENTATIONS,
    ScoreFunction,
    augment,
    knn_predict,
    pair_weights,
    score_network_config,
    simclr_loss,
    simsiam_loss,
    ssl_config,
    train_ssl,
    vicreg_loss,
    wmse_loss,
)
from mtl_diffusion.train import Trainer

N, D = 6, 3


def pairs(seed: int = 0, n: int = N, d: int = D) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = z1 + 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.rand(n, generator=g, dtype=torch.float64) * 2
    return z1, z2, w


def cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


# --- loop transcriptions of the formulas -----------------------------------------------------
def simclr_ref(z1, z2, w, tau):
    views = z1.tolist() + z2.tolist()
    n = len(z1)
    total, positive_part = 0.0, 0.0
    for a in range(2 * n):
        p = (a + n) % (2 * n)
        sims = {k: cos(views[a], views[k]) / tau for k in range(2 * n) if k != a}
        positive = -w[a % n] * sims[p]
        total += positive + math.log(sum(math.exp(s) for s in sims.values()))
        positive_part += -sims[p]
    return total / (2 * n), positive_part / (2 * n)


def simsiam_ref(p1, p2, z1, z2, w):
    rows = zip(p1.tolist(), p2.tolist(), z1.tolist(), z2.tolist(), w.tolist(), strict=True)
    return sum(-wi * (cos(a, d) + cos(b, c)) / 2 for a, b, c, d, wi in rows) / len(p1)


def column_stats(z):
    rows = z.tolist()
    n, d = len(rows), len(rows[0])
    mean = [sum(r[j] for r in rows) / n for j in range(d)]
    cov = [
        [sum((r[j] - mean[j]) * (r[k] - mean[k]) for r in rows) / (n - 1) for k in range(d)]
        for j in range(d)
    ]
    return rows, mean, cov


def vicreg_ref(z1, z2, w, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4):
    n, d = z1.shape
    a, b = z1.tolist(), z2.tolist()
    invariance = (
        sum(w[i] * sum((a[i][j] - b[i][j]) ** 2 for j in range(d)) / d for i in range(n)) / n
    )
    reg_v = reg_c = 0.0
    for z in (z1, z2):
        _, _, cov = column_stats(z)
        reg_v += sum(max(0.0, gamma - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d
        reg_c += sum(cov[j][k] ** 2 for j in range(d) for k in range(d) if j != k) / d
    return lam * invariance + mu * reg_v + nu * reg_c, invariance


def whiten_ref(z):
    rows, mean, cov = column_stats(z)
    d = len(mean)
    low = [[0.0] * d for _ in range(d)]  # Cholesky-Banachiewicz
    for i in range(d):
        for j in range(i + 1):
            s = sum(low[i][k] * low[j][k] for k in range(j))
            low[i][j] = math.sqrt(cov[i][i] - s) if i == j else (cov[i][j] - s) / low[j][j]
    out = []
    for r in rows:  # forward substitution: L h = r - mean
        c = [r[j] - mean[j] for j in range(d)]
        h = [0.0] * d
        for i in range(d):
            h[i] = (c[i] - sum(low[i][k] * h[k] for k in range(i))) / low[i][i]
        out.append(h)
    return out


def wmse_ref(z1, z2, w):
    h1, h2 = whiten_ref(z1), whiten_ref(z2)
    return sum(w[i] * (2 - 2 * cos(h1[i], h2[i])) for i in range(len(h1))) / len(h1)


# --- the losses ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_simclr_matches_loop(tau: float) -> None:
    z1, z2, w = pairs(1)
    expected, _ = simclr_ref(z1, z2, w.tolist(), tau)
    assert simclr_loss(z1, z2, w, temperature=tau).item() == pytest.approx(expected, rel=1e-10)


def test_simsiam_matches_loop() -> None:
    z1, z2, w = pairs(2)
    p1, p2, _ = pairs(3)
    expected = simsiam_ref(p1, p2, z1, z2, w)
    assert simsiam_loss(p1, p2, z1, z2, w).item() == pytest.approx(expected, rel=1e-10)


def test_vicreg_matches_loop() -> None:
    z1, z2, w = pairs(4)
    expected, _ = vicreg_ref(z1, z2, w.tolist())
    assert vicreg_loss(z1, z2, w).item() == pytest.approx(expected, rel=1e-10)


def test_wmse_matches_loop_and_whitens() -> None:
    z1, z2, w = pairs(5, n=9, d=3)
    assert wmse_loss(z1, z2, w).item() == pytest.approx(wmse_ref(z1, z2, w.tolist()), rel=1e-9)
    from mtl_diffusion.scorecl.losses import whiten

    h = whiten(z1)
    assert torch.allclose(torch.cov(h.T), torch.eye(3, dtype=h.dtype), atol=1e-10)
    with pytest.raises(ValueError, match="more samples"):
        whiten(z1[:3])


def all_losses(z1, z2, p1, p2, w):
    return {
        "simclr": simclr_loss(z1, z2, w),
        "simsiam": simsiam_loss(p1, p2, z1, z2, w),
        "vicreg": vicreg_loss(z1, z2, w),
        "wmse": wmse_loss(z1, z2, w),
    }


def test_weights_of_one_give_exactly_the_plain_loss() -> None:
    z1, z2, _ = pairs(6, n=8)
    p1, p2, _ = pairs(7, n=8)
    ones = torch.ones(8, dtype=z1.dtype)
    plain = all_losses(z1, z2, p1, p2, None)
    weighted = all_losses(z1, z2, p1, p2, ones)
    for name in plain:
        assert torch.equal(plain[name], weighted[name]), name
    # the plain loss is also the loop transcription with unit weights
    assert plain["vicreg"].item() == pytest.approx(vicreg_ref(z1, z2, [1.0] * 8)[0], rel=1e-10)
    assert plain["wmse"].item() == pytest.approx(wmse_ref(z1, z2, [1.0] * 8), rel=1e-9)


@pytest.mark.parametrize("c", [0.0, 2.5])
def test_weights_scale_only_the_invariance_term(c: float) -> None:
    z1, z2, _ = pairs(8, n=8)
    p1, p2, _ = pairs(9, n=8)
    ones = torch.ones(8, dtype=z1.dtype)
    base = all_losses(z1, z2, p1, p2, ones)
    scaled = all_losses(z1, z2, p1, p2, c * ones)
    _, simclr_positive = simclr_ref(z1, z2, [1.0] * 8, 0.5)
    _, vicreg_invariance = vicreg_ref(z1, z2, [1.0] * 8)
    expected_change = {
        "simclr": (c - 1) * simclr_positive,
        "simsiam": (c - 1) * base["simsiam"].item(),  # all of SimSiam is invariance
        "vicreg": (c - 1) * 25.0 * vicreg_invariance,
        "wmse": (c - 1) * base["wmse"].item(),
    }
    for name, change in expected_change.items():
        got = (scaled[name] - base[name]).item()
        assert got == pytest.approx(change, rel=1e-9, abs=1e-12), name


def test_simsiam_stops_gradients_through_targets() -> None:
    z1, z2, w = pairs(10)
    p1, p2, _ = pairs(11)
    for t in (z1, z2, p1):
        t.requires_grad_(True)
    simsiam_loss(p1, p2, z1, z2, w).backward()
    assert z1.grad is None and z2.grad is None and p1.grad.abs().sum() > 0


def test_bad_weights_raise() -> None:
    z1, z2, _ = pairs(12)
    with pytest.raises(ValueError, match="weights"):
        simclr_loss(z1, z2, torch.ones(N + 1, dtype=z1.dtype))
    with pytest.raises(ValueError, match="weights"):
        vicreg_loss(z1, z2, -torch.ones(N, dtype=z1.dtype))


# --- pair weights --------------------------------------------------------------------------------
def test_pair_weights_abs_diff() -> None:
    s1 = torch.tensor([1.0, 2.0, 5.0, 3.0])
    s2 = torch.tensor([1.5, 2.0, 1.0, 4.0])
    diff = [0.5, 0.0, 4.0, 1.0]
    mean = sum(diff) / 4
    w = pair_weights(s1, s2, "abs_diff", floor=0.2)
    expected = torch.tensor([0.2 + 0.8 * d / mean for d in diff])
    assert torch.allclose(w, expected) and w.mean().item() == pytest.approx(1.0)
    assert torch.equal(pair_weights(s1, s2, "none"), torch.ones(4))
    assert torch.equal(pair_weights(s1, s1, "abs_diff"), torch.ones(4))  # no differences
    with pytest.raises(ValueError, match="rule"):
        pair_weights(s1, s2, "ratio")


# --- augmentations -------------------------------------------------------------------------------
def digits(n: int = 16) -> torch.Tensor:
    return load_digits_split("test")[:n]


@pytest.mark.parametrize("kind", list(AUGMENTATIONS))
def test_strength_zero_is_identity_and_small_strength_is_close(kind: str) -> None:
    x = digits()
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, {kind: 0.0}, g), x)
    tiny = augment(x, {kind: 1e-6}, torch.Generator().manual_seed(0))
    assert torch.allclose(tiny, x, atol=1e-4), (tiny - x).abs().max()


@pytest.mark.parametrize("kind", list(AUGMENTATIONS))
def test_change_grows_with_strength(kind: str) -> None:
    x = digits(64)
    change = [
        (augment(x, {kind: s}, torch.Generator().manual_seed(1)) - x).abs().mean().item()
        for s in (0.25, 0.5, 1.0)
    ]
    assert 0 < change[0] < change[1] < change[2], change


def test_generator_makes_augmentation_deterministic() -> None:
    x = digits()
    strengths = {k: 0.7 for k in AUGMENTATIONS}
    a = augment(x, strengths, torch.Generator().manual_seed(3))
    b = augment(x, strengths, torch.Generator().manual_seed(3))
    c = augment(x, strengths, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_affine_at_identity_parameters_and_bad_input() -> None:
    from mtl_diffusion.scorecl.augment import random_affine

    x = digits()
    assert torch.allclose(random_affine(x, 0.0, torch.Generator()), x, atol=1e-6)
    with pytest.raises(ValueError, match="augmentation"):
        augment(x, {"jitter": 0.5}, torch.Generator())
    with pytest.raises(ValueError, match="strength"):
        augment(x, {"noise": 1.5}, torch.Generator())


# --- the score network ---------------------------------------------------------------------------
def test_score_network_denoising_loss_falls_and_score_formula() -> None:
    cfg = score_network_config(ssl_config("smoke", score_steps=40))
    cfg = apply(cfg, {"train.batch_size": 32, "train.lr": 3e-3})
    trainer = Trainer(cfg)
    schedule = trainer.schedule
    g = torch.Generator().manual_seed(0)
    x0 = load_digits_split("test")[:256]
    t = torch.randint(0, cfg.timesteps.t_end + 1, (256,), generator=g)
    noise = torch.randn(x0.shape, generator=g)

    def held_out() -> float:
        with torch.no_grad():
            return per_sample_loss(trainer.model.eval(), schedule, x0, t, noise).mean().item()

    before = held_out()
    trainer.fit()
    after = held_out()
    assert after < 0.7 * before, (before, after)

    score = ScoreFunction(trainer.model, schedule_from_config(cfg), t=10)
    sigma = math.sqrt(1 - schedule.alphas_cumprod[10].item())
    with torch.no_grad():
        eps = trainer.model(x0[:4], torch.full((4,), 10))
    assert torch.allclose(score.score(x0[:4]), -eps / sigma, rtol=1e-5)
    assert torch.allclose(score.value(x0[:4]), (eps / sigma).flatten(1).norm(dim=1), rtol=1e-5)


# --- k-NN -----------------------------------------------------------------------------------
@pytest.mark.parametrize("vote", ["weighted", "majority"])
def test_knn_matches_brute_force(vote: str) -> None:
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(40, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (40,), generator=g)
    queries = torch.randn(25, 5, generator=g, dtype=torch.float64)
    k, tau = 7, 0.2
    expected = []
    for q in queries.tolist():
        sims = sorted(((cos(q, b), i) for i, b in enumerate(bank.tolist())), reverse=True)[:k]
        score = [0.0] * 4
        for s, i in sims:
            score[int(labels[i])] += math.exp(s / tau) if vote == "weighted" else 1.0
        expected.append(max(range(4), key=lambda c: (score[c], -c)))  # ties: smallest label
    got = knn_predict(bank, labels, queries, k=k, vote=vote, temperature=tau)
    assert got.tolist() == expected


def test_knn_bad_arguments() -> None:
    bank = torch.randn(5, 2)
    with pytest.raises(ValueError, match="k must"):
        knn_predict(bank, torch.zeros(5, dtype=torch.long), bank, k=6)
    with pytest.raises(ValueError, match="vote"):
        knn_predict(bank, torch.zeros(5, dtype=torch.long), bank, vote="soft")


# --- the contrastive loop -----------------------------------------------------------------
@pytest.mark.parametrize("method", ["simclr", "simsiam", "vicreg", "wmse"])
def test_ssl_loop_is_deterministic_and_uses_weights(method: str) -> None:
    unet = build_model("unet", in_channels=1, base_channels=8, channel_mults=(1, 2))
    torch.nn.init.normal_(unet.out_conv.weight, std=0.1)  # zero-initialised output otherwise
    cfg = score_network_config(ssl_config("smoke"))
    score = ScoreFunction(unet, schedule_from_config(cfg), t=20)
    settings = ssl_config("smoke", method=method, weight_rule="abs_diff", steps=3, batch_size=32)
    a, b = train_ssl(settings, score), train_ssl(settings, score)
    assert a.losses == b.losses and all(math.isfinite(x) for x in a.losses)
    assert min(a.weight_std) > 0 and 0 <= a.knn_accuracy <= 1
    plain = train_ssl(ssl_config("smoke", method=method, steps=3, batch_size=32))
    assert plain.losses[0] != a.losses[0] and max(plain.weight_std) == 0


def test_ssl_config_rejects_unknown_values() -> None:
    with pytest.raises(ValueError, match="unknown SSLConfig fields"):
        ssl_config("cpu", epochs=3)
    with pytest.raises(ValueError, match="method"):
        ssl_config("cpu", method="byol")
    with pytest.raises(ValueError, match="weight_rule"):
        ssl_config("cpu", weight_rule="ratio")


def test_ssl_many_matches_direct_runs_and_caches(monkeypatch, tmp_path) -> None:
    """jobs=1 (spawning workers costs ~10 s of CPU here); the cpu notebook runs the pool."""
    import mtl_diffusion.paths as paths
    from mtl_diffusion.scorecl import score_network, ssl_many

    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path)
    configs = [
        ssl_config("smoke", method="vicreg", weight_rule=rule, steps=3, batch_size=32)
        for rule in ("none", "abs_diff")
    ]
    first = ssl_many(configs, jobs=1)
    score = score_network(configs[1])
    for cfg, result in zip(configs, first, strict=True):
        direct = train_ssl(cfg, score if cfg.weight_rule != "none" else None)
        assert result.config == cfg and result.losses == direct.losses
    assert len(list(tmp_path.rglob("scorecl_vicreg-*.pt"))) == 2
    again = ssl_many(configs, jobs=2)  # all cached: loads, starts no worker
    assert [r.losses for r in again] == [r.losses for r in first]
