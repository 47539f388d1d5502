# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Task affinity between timesteps (observation O1)
#
# **The claim (ANT, Go et al. 2023, Figure 1).** Treat the denoising loss at each noise level $t$
# as a task and measure how well two tasks agree by the *task affinity score*: the cosine between
# their loss gradients over all model parameters, averaged over checkpoints of one training run.
# Affinity is close to 1 between nearby timesteps and decays as $|t_i - t_j|$ (or the gap in
# log-SNR) grows; the lowest timesteps have low affinity with everything else. Tasks far apart can
# pull the shared weights in different directions — the premise of grouping timesteps into
# intervals and of the MTL methods in the later notebooks.
#
# **What this notebook measures.** A U-Net and a DiT are trained once each on the bundled 8x8
# digits (ordinary uniform-$t$ training through the shared `Trainer`). At four checkpoints of
# each run (the raw weights, as the published script loads them) we estimate the affinity between
# $G$ timestep bins of width $T/G$ on a *fixed* evaluation set: the same images and noise for every
# bin and every checkpoint, per-bin timesteps drawn once from a seeded generator
# (`mtl_diffusion.affinity`). Two estimators:
#
# - **gradient cosine** (ANT's score): $\cos(\nabla L_i, \nabla L_j)$, per-bin gradients from
#   `vmap(grad)` and a Gram matrix accumulated in blocks (so $G = T$ also fits in memory);
# - **lookahead** (Fifty et al. 2021): $Z_{i\to j} = 1 - L_j(\theta - \eta\nabla L_i)/L_j(\theta)$,
#   the relative drop of bin $j$'s loss after one plain SGD step on bin $i$ alone. Row $i$ is the
#   bin stepped on; the matrix is not symmetric and its scale depends on $\eta$.
#
# **How to read the figures.** Heatmaps: red = the two bins' gradients agree, blue = they
# conflict; $t$ grows to the right/down (left: against $t$; right: against log-SNR, where the
# high-SNR, low-noise bins sit on the right). Then the mean affinity against the bin distance
# $|i-j|$ (band: spread over checkpoints), and the lookahead estimator beside the gradient one.

# %% tags=["parameters"]
profile: str = "cpu"  # smoke (CI, seconds) | cpu (laptop) | paper (GPU) | paper-smoke
seed: int = 0  # training seed; also seeds the fixed evaluation set
num_bins: int = 0  # G timestep bins of width T / G (must divide T); 0: 20 (10 under smoke)
steps: int = 0  # training steps of each run; 0: 1000 under cpu, else the profile's default
lookahead_samples: int = 0  # images per bin for the lookahead (costs G x more); 0: 32 (smoke 8)
lookahead_lr: float = 0.002  # plain SGD step of the lookahead (1e-3..4e-3 is sensible here)
jobs: int = 2  # processes working on the two models at once, one thread each (smoke: 1)
config_overrides: str = ""  # more config overrides, applied last: space-separated key assignments

# %%
from mtl_diffusion import notebook

this_run = notebook.start("01_task_affinity", globals())  # strict parameters, run folder, 1 thread

import time

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr

from mtl_diffusion import config
from mtl_diffusion.affinity import (
    affinity_run_steps,
    bin_edges,
    default_num_bins,
    estimate_affinity,
    mean_by_distance,
    precompute_affinity,
    training_snapshots,
)
from mtl_diffusion.builders import schedule_from_config
from mtl_diffusion.plotting import legend, patch_key, savefig, set_style

set_style()
archs = ("unet", "dit")
names = {"unet": "U-Net", "dit": "DiT"}
overrides = affinity_run_steps(profile, steps) | config.parse_overrides(config_overrides)
cfgs = {arch: config.load(profile, overrides | {"model.arch": arch}, seed=seed) for arch in archs}
cfg = cfgs["unet"]
T = cfg.diffusion.num_timesteps
schedule = schedule_from_config(cfg)
num_bins = num_bins or default_num_bins(cfg)
edges = bin_edges(T, num_bins)
centres = (edges[:-1] + edges[1:] - 1) / 2
log_snr = schedule.log_snr().numpy()
log_snr_edges = log_snr[np.minimum(edges, T - 1)]  # decreasing in t
log_snr_centres = np.interp(centres, np.arange(T), log_snr)
print(f"T = {T}, G = {num_bins} bins of {T // num_bins} steps, {cfg.train.steps} training steps, "
      f"schedule {cfg.diffusion.schedule}")

# %% [markdown]
# ## Train once per model, estimate at every checkpoint
#
# `training_snapshots` trains the vanilla run and keeps the raw weights at $s/4, s/2, 3s/4, s$;
# `estimate_affinity` runs one estimator at every snapshot (both cached: a re-run loads them).
# `precompute_affinity` does all of it for the two models in parallel worker processes first,
# so the loop below loads the results.
# `task_affinity(cfg, num_bins)` — what ANT's affinity clustering calls — is the gradient
# estimate averaged over the snapshots.

# %%
lookahead = {"samples_per_bin": lookahead_samples or None, "lr": lookahead_lr}
start = time.perf_counter()
precompute_affinity(list(cfgs.values()), num_bins, lookahead=lookahead,
                    jobs=1 if config.is_smoke(profile) else jobs)
print(f"both models trained and estimated in {time.perf_counter() - start:.0f} s wall")
snaps, grad_est, look_est = {}, {}, {}
for arch, c in cfgs.items():  # loads what precompute_affinity cached
    snaps[arch] = training_snapshots(c)
    grad_est[arch] = estimate_affinity(c, num_bins)
    look_est[arch] = estimate_affinity(c, num_bins, estimator="lookahead", **lookahead)
    print(f"{names[arch]}: snapshots {snaps[arch].steps}; training "
          f"{snaps[arch].train_seconds:.0f} s, gradient estimate {grad_est[arch].seconds:.0f} s, "
          f"lookahead {look_est[arch].seconds:.0f} s (when computed)")

# %%
fig, axes = plt.subplots(2, 2, figsize=(11.5, 9.5), layout="constrained")
for ax in axes.flat:
    ax.grid(False)
for row, arch in enumerate(archs):
    tas = grad_est[arch].mean
    ax_t, ax_snr = axes[row]
    image = ax_t.imshow(tas, cmap="RdBu_r", vmin=-1, vmax=1, extent=(0, T, T, 0))
    ax_t.set(xlabel="timestep t", ylabel="timestep t",
             title=f"{names[arch]}: gradient-cosine affinity vs t")
    ax_snr.pcolormesh(log_snr_edges, log_snr_edges, tas, cmap="RdBu_r", vmin=-1, vmax=1)
    ax_snr.set(xlabel="log SNR", ylabel="log SNR", title=f"{names[arch]}: the same vs log-SNR")
    ax_snr.set_aspect("equal")
fig.colorbar(image, ax=axes, shrink=0.6,
             label="cos(grad L_i, grad L_j), mean over checkpoints\n(red: agree, blue: conflict)")
savefig(fig, "01_task_affinity", profile)

# %% [markdown]
# ## Affinity against the distance between bins
#
# For each distance $d = |i - j|$ in bins, the mean affinity over all pairs at that distance
# (line: averaged over checkpoints; band: the range over the individual checkpoints). Right: every
# pair against its gap in log-SNR (bin centres). The Spearman rank correlation summarises
# "affinity falls as tasks move apart" in one number (-1 = strictly decreasing).

# %%
distance = np.abs(np.subtract.outer(np.arange(num_bins), np.arange(num_bins)))
upper = np.triu_indices(num_bins, k=1)
d_values = np.arange(1, num_bins)

summary = {}
fig, (ax_d, ax_s) = plt.subplots(1, 2, figsize=(12, 4.2))
for arch in archs:
    est = grad_est[arch]
    per_checkpoint = np.stack([mean_by_distance(m) for m in est.matrices])
    curve = mean_by_distance(est.mean)
    rho = spearmanr(distance[upper], est.mean[upper]).statistic
    rho_checkpoints = [spearmanr(distance[upper], m[upper]).statistic for m in est.matrices]
    summary[arch] = {"curve": curve, "rho": rho, "rho_checkpoints": rho_checkpoints}
    line, = ax_d.plot(d_values, curve, "o-", ms=3, label=f"{names[arch]} (Spearman {rho:.2f})")
    ax_d.fill_between(d_values, per_checkpoint.min(0), per_checkpoint.max(0),
                      color=line.get_color(), alpha=0.2)
    gap = np.abs(np.subtract.outer(log_snr_centres, log_snr_centres))[upper]
    ax_s.scatter(gap, est.mean[upper], s=6, alpha=0.5, color=line.get_color(), label=names[arch])
num_checkpoints = len(grad_est[archs[0]].matrices)
for ax in (ax_d, ax_s):
    ax.axhline(0, color="grey", lw=0.8, label="0: orthogonal gradients")
ax_d.set(xlabel=f"bin distance |i - j| (bins of {T // num_bins} steps)",
         ylabel="mean gradient-cosine affinity",
         title="affinity falls with the distance between tasks")
legend(ax_d, patch_key(f"band (in the line's colour): range over the {num_checkpoints} "
                       "checkpoints", alpha=0.3))
ax_s.set(xlabel="|log SNR_i - log SNR_j| (bin centres)",
         ylabel="gradient-cosine affinity (mean over checkpoints)", title="every pair of bins")
ax_s.legend()
fig.tight_layout()
savefig(fig, "01_task_affinity_distance", profile)

shown = [d for d in (1, 2, 5, 10, num_bins // 2, num_bins - 1) if d < num_bins]
for arch in archs:
    s = summary[arch]
    at = ", ".join(f"d={d}: {s['curve'][d - 1]:.2f}" for d in sorted(set(shown)))
    print(f"{names[arch]}: mean affinity {at}; Spearman {s['rho']:.2f} "
          f"(checkpoints: {', '.join(f'{r:.2f}' for r in s['rho_checkpoints'])}); "
          f"most negative cosine {grad_est[arch].mean.min():.2f}")

# %% [markdown]
# ## Which bins conflict?
#
# The most negative entries of each averaged matrix, and each bin's mean affinity to all others
# (low for a bin that agrees with nobody).

# %%
for arch in archs:
    tas = grad_est[arch].mean
    off = tas + np.diag(np.full(num_bins, np.nan))
    i, j = np.unravel_index(np.nanargmin(off), off.shape)
    mean_other = np.nanmean(off, axis=1)
    lonely = int(np.argmin(mean_other))
    print(f"{names[arch]}: most negative pair: t in [{edges[i]}, {edges[i + 1]}) vs "
          f"[{edges[j]}, {edges[j + 1]}): {tas[i, j]:.2f}; lowest mean affinity to the others: "
          f"t in [{edges[lonely]}, {edges[lonely + 1]}) ({mean_other[lonely]:.2f}); fraction of "
          f"negative pairs {np.mean(tas[upper] < 0):.2f}")

# %% [markdown]
# ## The lookahead estimator beside the gradient cosine
#
# Left of each pair: the gradient cosine; right: the lookahead $Z_{i \to j}$ (row $i$ = the bin
# stepped on), averaged over the same checkpoints, in its own colour scale (its size is set by the
# step size). To first order $Z_{i\to j} \approx \eta\, \nabla L_i \cdot \nabla L_j / L_j$: the
# same sign as the cosine, but scaled by gradient norms and losses, so bins with large gradients
# dominate the rows. We compare the two by rank correlation of the off-diagonal entries (the
# lookahead symmetrised).

# %%
fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), layout="constrained")
for ax in axes:
    ax.grid(False)
for k, arch in enumerate(archs):
    look = look_est[arch].mean
    limit = np.abs(look).max()
    cosine = axes[2 * k].imshow(grad_est[arch].mean, cmap="RdBu_r", vmin=-1, vmax=1,
                                extent=(0, T, T, 0))
    axes[2 * k].set(title=f"{names[arch]}: gradient cosine", xlabel="timestep t",
                    ylabel="timestep t")
    fig.colorbar(cosine, ax=axes[2 * k], shrink=0.8, label="cos(grad L_i, grad L_j)")
    image = axes[2 * k + 1].imshow(look, cmap="RdBu_r", vmin=-limit, vmax=limit,
                                   extent=(0, T, T, 0))
    axes[2 * k + 1].set(title=f"{names[arch]}: lookahead (lr {lookahead_lr:g})",
                        xlabel="t of the bin measured (j)", ylabel="t of the bin stepped on (i)")
    fig.colorbar(image, ax=axes[2 * k + 1], shrink=0.8,
                 label="lookahead Z(i -> j) (> 0: a step on i lowers L_j)")
    symmetric = 0.5 * (look + look.T)
    agreement = spearmanr(grad_est[arch].mean[upper], symmetric[upper]).statistic
    sign = np.mean(np.sign(grad_est[arch].mean[upper]) == np.sign(symmetric[upper]))
    summary[arch] |= {"lookahead_rho": agreement, "lookahead_sign": sign}
    print(f"{names[arch]}: rank correlation gradient vs lookahead {agreement:.2f}, same sign on "
          f"{sign:.0%} of pairs; lookahead range [{look.min():.4f}, {look.max():.4f}], its "
          f"Spearman against distance {spearmanr(distance[upper], symmetric[upper]).statistic:.2f}")
savefig(fig, "01_task_affinity_lookahead", profile)

# %% [markdown]
# ## What we measured under `cpu` (seed 0), and how it compares with the paper
#
# **What the budget bought.** One training seed per model, 1,000 steps each (batch 128; set by
# `affinity_run_steps` under `cpu`, the profile's default is 1,500), four checkpoints, $G = 20$
# bins of 50 steps, 64 images per bin for the gradient estimator and 32 for the lookahead. With
# the two models trained and estimated in parallel worker processes (one thread each) the
# notebook took 434 s from nothing in the `make figures` run of 2026-12-03 (a clean clone, 2-core
# Intel Xeon, JOBS=2), two notebooks at a time on 2 cores (training 296 s U-Net, 372 s DiT;
# gradient estimates 23 s and 12 s over four checkpoints; lookahead 48 s and 33 s). The spread we
# can report is over checkpoints only (one seed).
#
# **Gradient cosine: O1 reproduces.** Mean affinity at bin distance 1 / 5 / 10 is 0.94 / 0.67 /
# 0.37 for the U-Net and 0.95 / 0.73 / 0.46 for the DiT (Spearman against distance -0.76 and
# -0.81; the four checkpoints alone give -0.63 to -0.86). As in the paper's Figure 1, the
# diagonal band is close to 1 and widens at high noise: the high-noise bins (t > 500, log-SNR
# below -2.5) form one block of strongly agreeing tasks (sharp for the U-Net; the DiT's band
# widens more gradually). The lowest-noise bin (t < 50) agrees least with everything else (mean
# 0.06 for the U-Net, 0.12 for the DiT), the paper's "lowest timesteps have low affinity". On the
# log-SNR axis, that single bin covers log-SNR 3.5 to 9: bins of equal width in $t$ are very
# unequal in log-SNR.
#
# **What does not reproduce here.** Negative cosines are rare and tiny (6 % of the U-Net's pairs,
# the most negative -0.07, between t < 50 and t in [750, 800); none for the DiT, whose lowest
# cosine is 0.04), while an earlier throwaway probe (on another machine and an earlier setup, so
# its numbers are not comparable with this run's) saw two blocks, low noise and mid/high noise,
# with strongly negative cosines. Its protocol is recorded only as "gradient cosine over 4
# minibatches"; here one eval set of 64 images and noises is shared by every bin, which may make
# far bins agree more. We have not isolated the cause, so at this scale we report a smooth decay
# without conflicting-gradient blocks.
#
# **The lookahead tells a partly different story.** It agrees in sign with the cosine on 97-99 %
# of the pairs, but its ranking correlates only 0.63 (U-Net) and 0.51 (DiT) with the cosine and
# hardly depends on distance (Spearman -0.08 and -0.03). The reason is its normalisation: with
# $\varepsilon$-prediction, the high-noise bins have tiny losses (far below the low-noise bins';
# the per-bin losses are not printed here), so any step changes them by a large *relative*
# amount and their columns dominate the matrix. One SGD step on the lowest-noise bin *raises* the
# loss of the high-noise bins by up to 2 % in both models (lookahead minimum -0.0225 U-Net,
# -0.0220 DiT), the only clear sign of negative transfer in this notebook.

# %% [markdown]
# ## What this run supports
#
# Every profile: the estimates are finite (symmetry, the unit diagonal and the range $[-1, 1]$
# hold by how cosines are computed and are not asserted). Under `cpu` and `paper` the O1 claim is asserted for both models: affinity falls with
# the distance between bins, i.e. a clearly negative rank correlation (below -0.3, fixed before
# the run) and a higher mean affinity between neighbours than between the farthest bins.

# %%
# (Cosine matrices are symmetric with a unit diagonal by how they are computed: not asserted.)
for arch in archs:
    finite = [np.isfinite(e[arch].matrices).all() for e in (grad_est, look_est)]
    assert all(finite), f"{names[arch]}: a non-finite affinity (a zero gradient?)"
if not config.is_smoke(profile):
    for arch in archs:
        s = summary[arch]
        assert s["rho"] < -0.3, f"{names[arch]}: Spearman {s['rho']:.2f} is not clearly negative"
        assert s["curve"][0] > s["curve"][-1], f"{names[arch]}: neighbours agree no more than far"
print({arch: {"rho": round(float(summary[arch]["rho"]), 3),
              "d=1": round(float(summary[arch]["curve"][0]), 3),
              "lookahead_rho": round(float(summary[arch]["lookahead_rho"]), 3)} for arch in archs})

# %% [markdown]
# The numbers above as data: `results.json` in this run's folder (`mtl_diffusion.results.load_results()` reads a batch of runs into one DataFrame).

# %%
this_run.save_results(
    {arch: {key: summary[arch][key] for key in ("rho", "curve", "lookahead_rho")}
     for arch in archs},
    config=cfg, seeds=[seed],
)
