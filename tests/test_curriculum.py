"""The difficulty curriculum (stage order, union sampling, pacing, resume) and the difficulty
measurements (closed-form and Monte Carlo relative entropy, convergence curves)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from mtl_diffusion import paths
from mtl_diffusion.affinity import training_snapshots
from mtl_diffusion.builders import model_from_config, schedule_from_config
from mtl_diffusion.clustering import snr_clusters, timestep_clusters
from mtl_diffusion.config import load
from mtl_diffusion.curriculum import CurriculumTimesteps, transitions_from_losses
from mtl_diffusion.data import gaussian_mixture_8
from mtl_diffusion.difficulty import (
    ConvergenceCurves,
    GaussianMixture,
    gaussian_kl,
    gaussian_marginal_kl,
    interval_losses,
    interval_means,
    mixture_marginal_kl,
    snapshot_curves,
)
from mtl_diffusion.diffusion import make_schedule
from mtl_diffusion.timesteps import UniformTimesteps
from mtl_diffusion.train import Trainer

T = 1000
TEN = timestep_clusters(T, 10)  # (0, 99), (100, 199), ..., (900, 999)


def curriculum(**kw: object) -> CurriculumTimesteps:
    return CurriculumTimesteps(TEN, **kw)  # type: ignore[arg-type]


# --- stage order and union sampling ----------------------------------------------------------


def test_easy_first_adds_clusters_from_high_noise_down() -> None:
    c = curriculum(pacing="fixed", stage_steps=1)
    seen = []
    for step in range(1, 12):
        seen.append(c.timestep_range())
        c.observe(step, 1.0)
    expected = [(900 - 100 * s, 999) for s in range(10)] + [(0, 999)]
    assert seen == expected


def test_hard_first_adds_clusters_from_low_noise_up() -> None:
    c = curriculum(order="hard_first", pacing="fixed", stage_steps=1)
    seen = []
    for step in range(1, 11):
        seen.append(c.included())
        c.observe(step, 1.0)
    assert seen == [list(range(s + 1)) for s in range(10)]


@pytest.mark.parametrize("order", ["easy_first", "hard_first"])
def test_samples_are_uniform_over_the_union_of_uneven_clusters(order: str) -> None:
    intervals = [(0, 49), (50, 299), (300, 319), (320, 699), (700, 999)]
    widths = np.array([e - s + 1 for s, e in intervals])
    c = CurriculumTimesteps(intervals, order=order, pacing="fixed", stage_steps=1)
    for step in range(1, 3):  # stage 2: three clusters
        c.observe(step, 1.0)
    chosen = [4, 3, 2] if order == "easy_first" else [0, 1, 2]
    t = c.sample(60_000, torch.Generator().manual_seed(0)).numpy()
    cluster = np.searchsorted([s for s, _ in intervals[1:]], t, side="right")
    assert set(np.unique(cluster)) == set(chosen)
    counts = np.array([(cluster == k).sum() for k in chosen])
    expected = (
        widths[chosen] / widths[chosen].sum() * len(t)
    )  # uniform over timesteps, not clusters
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    low, high = min(intervals[k][0] for k in chosen), max(intervals[k][1] for k in chosen)
    per_t = np.bincount(t - low, minlength=high - low + 1)
    assert stats.chisquare(per_t).pvalue > 1e-3


def test_after_the_last_stage_it_is_ordinary_uniform_sampling() -> None:
    c = curriculum(pacing="fixed", stage_steps=2)
    for step in range(1, 19):
        c.observe(step, 1.0)
    assert c.finished and c.stage == 9 and c.timestep_range() == (0, T - 1)
    for step in range(19, 500):
        c.observe(step, 100.0 + step)  # nothing moves any more
    assert c.stage == 9 and len(c.transitions) == 9
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(c.sample(4096, a), UniformTimesteps(T).sample(4096, b))


# --- pacing ------------------------------------------------------------------------------------


def test_fixed_pacing_changes_stage_every_stage_steps() -> None:
    c = CurriculumTimesteps(timestep_clusters(T, 4), pacing="fixed", stage_steps=3)
    for step in range(1, 30):
        c.observe(step, float(step))
    assert c.transitions == [(3, 1), (6, 2), (9, 3)]


def test_patience_pacing_on_a_scripted_loss_sequence() -> None:
    c = CurriculumTimesteps(timestep_clusters(T, 4), pacing="patience", patience=2, smoothing=0.0)
    script = [
        3,
        2,
        1,
        1,
        1,  # best at step 3; steps 4, 5 no better -> advance after 5
        10,
        11,
        12,  # new stage: the best restarts at 10 despite the higher level -> after 8
        9,
        8,
        7,
        6,
        6.5,
        5.9,
        6,
        6,  # keeps improving until 14 -> after 16
        1,
        2,
        3,
        4,
    ]  # final stage: nothing more
    for step, loss in enumerate(script, start=1):
        c.observe(step, loss)
    assert c.transitions == [(5, 1), (8, 2), (16, 3)]


def test_smoothed_loss_is_the_bias_corrected_moving_average() -> None:
    beta = 0.8
    c = curriculum(pacing="patience", patience=100, smoothing=beta)
    losses = [4.0, 2.0, 3.0, 1.0, 5.0]
    for step, loss in enumerate(losses, start=1):
        c.observe(step, loss)
        n = len(losses[:step])
        w = np.array([beta ** (n - 1 - i) for i in range(n)])  # weighted mean of the losses so far
        assert c.smoothed_loss == pytest.approx(float(w @ losses[:n] / w.sum()), rel=1e-12)


def test_smoothing_delays_a_transition_the_raw_loss_would_trigger() -> None:
    script = [5, 4, 3, 3.2, 2.9, 3.1, 2.8, 3.0]  # noisy but falling
    raw = CurriculumTimesteps(TEN, patience=1, smoothing=0.0)
    smooth = CurriculumTimesteps(TEN, patience=1, smoothing=0.5)
    for step, loss in enumerate(script, start=1):
        raw.observe(step, loss)
        smooth.observe(step, loss)
    assert raw.transitions[0] == (4, 1)
    assert smooth.transitions == [] or smooth.transitions[0][0] > 4


def test_transitions_replay_from_a_runs_losses() -> None:
    cfg = load(
        "smoke", {**TINY, "train.steps": 12, "curriculum.patience": 2, "curriculum.smoothing": 0.3}
    )
    trainer = Trainer(cfg)
    trainer.fit()
    assert trainer.timesteps.transitions, "the run should change stage at least once"
    assert transitions_from_losses(cfg, trainer.history.losses) == trainer.timesteps.transitions


def test_bad_arguments_raise_naming_the_parameter() -> None:
    for kw, name in [
        ({"order": "random"}, "order"),
        ({"pacing": "loss"}, "pacing"),
        ({"patience": 0}, "patience"),
        ({"stage_steps": 0}, "stage_steps"),
        ({"smoothing": 1.0}, "smoothing"),
    ]:
        with pytest.raises(ValueError, match=name):
            curriculum(**kw)
    with pytest.raises(ValueError, match="t_start"):
        CurriculumTimesteps.from_config(load("smoke", {"timesteps.t_start": 10}))
    with pytest.raises(ValueError, match="settings"):
        curriculum(order="hard_first").load_state_dict(curriculum().state_dict())


def test_from_config_uses_the_configured_clusters() -> None:
    cfg = load(
        "smoke",
        {
            "timesteps.sampler": "curriculum",
            "curriculum.num_clusters": 5,
            "curriculum.clustering": "snr",
        },
    )
    c = CurriculumTimesteps.from_config(cfg)
    assert c.intervals == snr_clusters(make_schedule("linear", T), 5)


# --- resume mid-curriculum through the trainer --------------------------------------------------

TINY = {
    "train.steps": 10,
    "train.batch_size": 16,
    "train.checkpoint_every": 5,
    "train.eval_every": 0,
    "timesteps.sampler": "curriculum",
    "curriculum.num_clusters": 4,
}


@pytest.mark.parametrize(
    "pacing",
    [
        {"curriculum.pacing": "fixed", "curriculum.stage_steps": 3},
        {"curriculum.pacing": "patience", "curriculum.patience": 1, "curriculum.smoothing": 0.3},
    ],
)
def test_resume_mid_curriculum_equals_uninterrupted_run(tmp_path: Path, pacing: dict) -> None:
    cfg = load("smoke", {**TINY, **pacing})
    straight = Trainer(cfg, run_dir=tmp_path / "a")
    straight.fit()

    interrupted = Trainer(cfg, run_dir=tmp_path / "b")
    interrupted.fit(steps=5)
    mid = interrupted.timesteps.state_dict()
    assert mid["stage"] >= 1 and not interrupted.timesteps.finished  # really mid-curriculum
    resumed = Trainer(cfg, run_dir=tmp_path / "b")
    assert resumed.step == 5 and resumed.timesteps.state_dict() == mid
    resumed.fit()

    assert resumed.history.losses == straight.history.losses
    assert resumed.timesteps.state_dict() == straight.timesteps.state_dict()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- relative entropy between consecutive marginals ----------------------------------------------


def test_gaussian_kl_matches_numerical_integration_in_1d() -> None:
    p, q = stats.norm(0.3, 0.7), stats.norm(-0.2, 1.1)
    numeric, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -15, 15)
    assert gaussian_kl([0.3], [[0.49]], [-0.2], [[1.21]]) == pytest.approx(numeric, rel=1e-9)


def test_gaussian_kl_matches_monte_carlo_in_2d() -> None:
    m0, s0 = np.array([0.5, -1.0]), np.array([[1.0, 0.6], [0.6, 0.8]])
    m1, s1 = np.array([0.0, 0.2]), np.array([[1.5, -0.3], [-0.3, 0.6]])
    p, q = stats.multivariate_normal(m0, s0), stats.multivariate_normal(m1, s1)
    x = p.rvs(size=400_000, random_state=np.random.default_rng(0))
    log_ratio = p.logpdf(x) - q.logpdf(x)
    stderr = log_ratio.std() / math.sqrt(len(x))
    assert abs(gaussian_kl(m0, s0, m1, s1) - log_ratio.mean()) < 4 * stderr


def test_mixture_estimator_matches_the_closed_form_for_one_gaussian() -> None:
    schedule = make_schedule("linear", T)
    ts = np.array([1, 10, 100, 500, 999])
    mean, std = np.array([0.8, -0.5]), 0.3
    exact = gaussian_marginal_kl(schedule, mean, std**2 * np.eye(2), ts)
    mixture = GaussianMixture.isotropic(torch.from_numpy(mean[None]), std)
    estimate, stderr = mixture_marginal_kl(schedule, mixture, ts, num_samples=20_000)
    assert np.all(np.abs(estimate - exact) < 4 * stderr + 1e-12)
    assert np.all(stderr < 0.05 * exact)  # precise even where the KL is tiny


def test_mixture_estimator_matches_2d_quadrature_on_8_gaussians() -> None:
    schedule = make_schedule("linear", T)
    means, std = gaussian_mixture_8()
    mixture = GaussianMixture.isotropic(means, std)
    t = 40
    ab = schedule.alphas_cumprod
    before, after = mixture.noised(float(ab[t - 1])), mixture.noised(float(ab[t]))
    axis = torch.linspace(-2.0, 2.0, 801, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    log_p, log_q = before.log_prob(grid), after.log_prob(grid)
    cell = float(axis[1] - axis[0]) ** 2
    assert float(log_p.exp().sum()) * cell == pytest.approx(1.0, abs=1e-6)
    numeric = float((log_p.exp() * (log_p - log_q)).sum()) * cell
    estimate, stderr = mixture_marginal_kl(schedule, mixture, [t], num_samples=20_000)
    assert abs(estimate[0] - numeric) < 4 * stderr[0]


def test_dirac_mixture_density_is_the_average_of_gaussians() -> None:
    data = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noised = GaussianMixture.from_data(data).noised(0.6)
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dens = np.mean(
        [
            stats.multivariate_normal(np.sqrt(0.6) * m, 0.4 * np.eye(3)).pdf(x.numpy())
            for m in data.numpy()
        ],
        axis=0,
    )
    assert np.allclose(noised.log_prob(x).numpy(), np.log(dens), rtol=1e-10)


# --- convergence curves ---------------------------------------------------------------------------


def test_steps_to_converge_by_hand() -> None:
    losses = np.array([[4.0, 2.0], [2.0, 1.05], [1.5, 1.2], [1.0, 1.0]])
    curves = ConvergenceCurves(np.array([0, 10, 20, 30]), losses, [(0, 4), (5, 9)])
    # interval 0: 4, 2, 1.5, 1 -> within 10 % only at 30; interval 1: 2, 1.05, 1.2, 1 -> at 30
    assert curves.steps_to_converge(0.1).tolist() == [30, 30]
    # with 25 %: interval 1 is within from step 10 on
    assert curves.steps_to_converge(0.25).tolist() == [30, 10]
    # progress, the fraction of the decrease done: 0, 2/3, 5/6, 1 and 0, .95, .8, 1
    assert np.allclose(curves.progress(), [[0, 0], [2 / 3, 0.95], [5 / 6, 0.8], [1, 1]])
    assert curves.steps_to_converge(0.1, measure="progress").tolist() == [30, 30]
    assert curves.steps_to_converge(0.25, measure="progress").tolist() == [20, 10]
    assert interval_means(
        np.array([1, 3, 6, 9]), np.array([1.0, 3.0, 5.0, 7.0]), [(0, 4), (5, 9)]
    ).tolist() == [2.0, 6.0]


def test_snapshot_curves_equal_the_losses_of_runs_stopped_at_each_step(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ARTIFACTS", tmp_path)
    settings = {"train.steps": 6, "train.batch_size": 16, "train.eval_every": 0}
    cfg = load("smoke", {**settings, "train.checkpoint_every": 0})
    held_out = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    intervals = timestep_clusters(T, 3)
    snaps = training_snapshots(cfg, [0, 2, 6], "snaps", train=True)
    schedule = schedule_from_config(cfg)
    curves = snapshot_curves(snaps, model_from_config(cfg), schedule, held_out, intervals)
    for row, step in zip(curves.losses, [0, 2, 6], strict=True):
        stopped = Trainer(cfg)  # an independent run, stopped at this snapshot's step
        stopped.fit(steps=step)
        direct = interval_losses(stopped.model, schedule, held_out, intervals)
        assert np.array_equal(row, direct), step  # same weights, same t and noise every time
    assert curves.steps.tolist() == [0, 2, 6]
