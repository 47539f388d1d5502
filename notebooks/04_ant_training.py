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
# # 04 · ANT: multi-task learning methods on timestep clusters
#
# **The paper's claim** (Go et al., "Addressing Negative Transfer in Diffusion Models", NeurIPS
# 2023). Group the $T = 1000$ denoising tasks into $k = 5$ contiguous clusters of timesteps (by
# equal width, by log-SNR, or by task affinity; notebook 03), give every minibatch an equal share
# of every cluster, and train with an off-the-shelf multi-task method on the cluster losses
# $L_1, \dots, L_k$: uncertainty weighting (UW, learned $w_i \approx 1 / (2 L_i)$), PCGrad
# (project away conflicting gradient components) or NashMTL (bargaining weights $\alpha$ with
# $\alpha_i (G\alpha)_i = 1$ on the Gramian $G$ of the per-cluster gradients). In their Table 1
# **every one of the 9 method x clustering cells beats vanilla training** in FID, for ADM and LDM
# on FFHQ and CelebA-HQ (e.g. ADM FFHQ 24.95 -> 20.19 with UW on SNR clusters), and UW also beats
# the min-SNR and P2 loss weightings on DiT.
#
# **What this notebook measures.** The same table at laptop scale: a small U-Net on the 8x8
# digits, vanilla against {UW, PCGrad, NashMTL} x {timestep, SNR, affinity} clusterings
# ($k = 5$), plus the min-SNR-5 and P2 (weight $1/(1 + \mathrm{SNR})$) loss weightings as
# baselines, each trained from several seeds. Metrics at the end and over training: Fréchet
# distance on the raw pixels (the most precise ranking metric here), on the digits classifier's
# features (our offline stand-in for FID), KID, precision and recall. Then the weights the
# methods learn per cluster over training (UW's $0.5\,e^{-s_i}$, Nash's $\alpha$).
#
# **How it is computed.** `mtl_diffusion.mtl.engine`: loss-based methods (UW) run one backward of
# their combined loss; gradient methods (PCGrad, Nash) get the exact per-cluster gradients from
# ONE forward and backward of the batch (per-layer capture, `benchmarks/bench_mtl.py`), combine
# them through the $k \times k$ Gramian and update the EMA like every other run. NashMTL solves
# on the Frobenius-normalised Gramian every 25 steps (as in ANT) with our own Newton solver and
# clips its update at norm 1 as published. The batch of 128 holds 26, 26, 26, 25, 25 samples of
# the five clusters (the first $128 \bmod 5$ clusters get one more); $L_i$ is the sum of cluster
# $i$'s losses divided by the batch size, so $\sum_i L_i$ is the ordinary batch-mean loss.
#
# **How to read it.** Lower distances are better; precision and recall are better high. Every
# model is sampled from the same initial noise (common random numbers) and runs with the same
# seed share their initial weights and data order. A cell counts as better (worse) than vanilla
# only when the gap between the means exceeds the larger of the two across-seed standard
# deviations; otherwise it is within noise. This rule was fixed before the numbers were seen.

# %% tags=["parameters"]
profile: str = "cpu"  # smoke (CI, seconds) | cpu (laptop) | paper (GPU) | paper-smoke
seed: int = 0  # first training seed; the replicates use seed, seed + 1, ...
num_seeds: int = 0  # training seeds per cell; 0 keeps the profile default (smoke 1, else 3)
steps: int = 0  # training steps per run; 0 keeps this notebook's default for the profile
num_clusters: int = 5  # k, the number of timestep clusters
jobs: int = 2  # training processes in parallel, one thread each (smoke trains in-process)
config_overrides: str = ""  # more config overrides, applied last: space-separated key assignments

# %%
from mtl_diffusion import notebook

this_run = notebook.start("04_ant_training", globals())  # strict parameters, run folder, 1 thread

import time

import matplotlib.pyplot as plt
import numpy as np

from mtl_diffusion import config
from mtl_diffusion.affinity import precompute_affinity, task_affinity
from mtl_diffusion.builders import schedule_from_config
from mtl_diffusion.evaluation import feature_label, pixel_label
from mtl_diffusion.plotting import (
    cluster_label,
    interval_keys,
    line_key,
    lower_is_better,
    patch_key,
    savefig,
    seed_dots_key,
    set_style,
    show_images,
)
from mtl_diffusion.runs import generate, train_many
from mtl_diffusion.clusters import clusters_from_config

set_style()
# What the budget buys: under cpu, a U-Net of base width 16 (160k parameters) trained 500 steps
# at batch 128, 36 runs (12 cells x 3 seeds) plus one affinity estimate per seed: 36 minutes under
# `make figures` from nothing (sharing the 2 cores with another notebook; 3260 s of training in
# the workers), over the 20-minute budget of a table notebook. EMA decay 0.99, chosen before the
# trainer's EMA had a warm-up (at 0.995 without one the zero-output initial weights would still
# carry 0.995^500 = 8 % of the evaluated model).
# Smoke proves the code path only.
SCALE = config.by_profile({
    "smoke": {
        "train.steps": 4,
        "train.eval_every": 2,
        "train.checkpoint_every": 0,
        "eval.num_samples": 100,
        "eval.sampling_steps": 5,
        "mtl.affinity_bins": 10,
    },
    "cpu": {
        "model.base_channels": 16,
        "train.steps": 500,
        "train.eval_every": 125,
        "train.ema_decay": 0.99,
        "eval.sampling_steps": 20,
    },
    "paper": {},
}, profile)
SCALE = config.notebook_overrides(SCALE, steps, config_overrides)
seeds = config.replicate_seeds(profile, seed, num_seeds)
workers = 1 if config.is_smoke(profile) else jobs  # workers cost more than smoke runs
METHODS = {"UW": "uw", "PCGrad": "pcgrad", "Nash": "nash"}
CLUSTERINGS = ("timestep", "snr", "affinity")
CELLS = {
    "vanilla": {},
    "min-SNR": {"diffusion.loss_weight": "min_snr"},
    "P2": {"diffusion.loss_weight": "p2"},
}
for label, method in METHODS.items():
    for clustering in CLUSTERINGS:
        CELLS[f"{label} / {clustering}"] = {
            "timesteps.sampler": "stratified",
            "mtl.method": method,
            "mtl.clustering": clustering,
            "mtl.num_clusters": num_clusters,
        }
configs = {
    (cell, s): config.load(profile, SCALE | overrides, seed=s)
    for cell, overrides in CELLS.items()
    for s in seeds
}
cfg = configs["vanilla", seeds[0]]
print(f"{len(configs)} runs: {len(CELLS)} cells x {len(seeds)} seeds {seeds}, "
      f"{cfg.train.steps} steps each, batch {cfg.train.batch_size}, k = {num_clusters}")
print(cfg)

# %% [markdown]
# ## The three clusterings
#
# Each seed's affinity clustering comes from its own vanilla run: ANT's task affinity score (the
# cosine between the loss gradients of two timestep bins, averaged over four checkpoints;
# `mtl_diffusion.affinity`) between `mtl.affinity_bins` bins of equal width, clustered by the
# interval dynamic programme (notebook 03). The timestep clustering cuts $0..T-1$ into equal
# widths; the SNR clustering groups timesteps of similar log-SNR. Estimating the affinity here,
# before the parallel training, also puts it in the cache the training workers read.

# %%
start = time.perf_counter()
affinity_configs = [configs["UW / affinity", s] for s in seeds]
precompute_affinity(affinity_configs, cfg.mtl.affinity_bins, jobs=workers)  # seeds in parallel
intervals = {
    (clustering, s): clusters_from_config(configs[f"UW / {clustering}", s])
    for clustering in CLUSTERINGS
    for s in seeds
}
affinity_cfg = configs["UW / affinity", seeds[0]]
tas = task_affinity(affinity_cfg, affinity_cfg.mtl.affinity_bins)
print(f"clusterings ready in {time.perf_counter() - start:.0f} s")
for (clustering, s), found in intervals.items():
    print(f"{clustering:9s} seed {s}: {found}")

schedule = schedule_from_config(cfg)
T = cfg.diffusion.num_timesteps
fig, (ax_bands, ax_tas) = plt.subplots(1, 2, figsize=(13, 4.2), width_ratios=[1.6, 1])
log_snr = schedule.log_snr().numpy()
ax_snr = ax_bands.twinx()
ax_snr.plot(np.arange(T), log_snr, color="k", lw=1)
ax_snr.set(ylabel="log SNR(t)")
ax_snr.grid(False)
for row, clustering in enumerate(CLUSTERINGS):
    for i, (lo, hi) in enumerate(intervals[clustering, seeds[0]]):
        ax_bands.barh(row, hi - lo + 1, left=lo, color=f"C{i}", edgecolor="white", height=0.7)
ax_bands.set(yticks=range(len(CLUSTERINGS)), yticklabels=CLUSTERINGS, xlabel="timestep t",
             xlim=(0, T), title=f"k = {num_clusters} clusters (seed {seeds[0]})")
bins = affinity_cfg.mtl.affinity_bins
image = ax_tas.imshow(tas, origin="lower", cmap="RdBu_r", vmin=-1, vmax=1,
                      extent=(0, T, 0, T))
for lo, _ in intervals["affinity", seeds[0]][1:]:
    ax_tas.axvline(lo, color="k", lw=0.8)
    ax_tas.axhline(lo, color="k", lw=0.8)
ax_tas.set(xlabel="timestep t", ylabel="timestep t",
           title=f"task affinity between {bins} bins\n(black lines: affinity-cluster boundaries)")
ax_tas.grid(False)
fig.colorbar(image, ax=ax_tas, fraction=0.046,
             label="gradient cosine\n(red: agree, blue: conflict)")
fig.tight_layout()
ax_bands.legend(handles=[*interval_keys(num_clusters), line_key("log SNR(t) (right axis)", lw=1)],
                loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize="small")
savefig(fig, "04_ant_clusters", profile)

# %% [markdown]
# ## Training the table
#
# `train_many` trains every (cell, seed) in parallel worker processes (one thread each) and
# caches each result; a re-run loads them in seconds.

# %%
start = time.perf_counter()
trained = train_many(list(configs.values()), "ant_training", jobs=workers)
results = dict(zip(configs, trained, strict=True))
wall = time.perf_counter() - start
METRICS = ("fd_pixel", "fd", "kid", "precision", "recall")
final = {
    cell: {m: np.array([results[cell, s].history.evals[-1][m] for s in seeds]) for m in METRICS}
    for cell in CELLS
}
curves = {
    cell: {m: np.array([results[cell, s].history.eval_series(m)[1] for s in seeds])
           for m in METRICS}
    for cell in CELLS
}
sd = {cell: {m: v.std(ddof=min(1, len(v) - 1)) for m, v in final[cell].items()} for cell in CELLS}
eval_steps = np.array(results["vanilla", seeds[0]].history.eval_series("fd")[0])
train_seconds = sum(r.history.seconds for r in trained)
print(f"{len(results)} runs ready in {wall:.0f} s wall ({train_seconds:.0f} s of training in "
      "the workers, evaluation excluded; step-time ratios: benchmarks/bench_mtl.py)")

print(f"\nfinal metrics at step {eval_steps[-1]}: mean ± sd over seeds {seeds}")
FD_LABELS = {"fd_pixel": f"{pixel_label(cfg)} FD", "fd": f"{feature_label(cfg)} FD"}
header = (*FD_LABELS.values(), "KID x 1e3", "precision", "recall")
print(f"{'cell':18s} " + " ".join(f"{h:>15s}" for h in header))
for cell in CELLS:
    row = [f"{final[cell][m].mean() * f:6.3f} ± {sd[cell][m] * f:5.3f}"
           for m, f in zip(METRICS, (1, 1, 1e3, 1, 1), strict=True)]
    print(f"{cell:18s} " + " ".join(f"{r:>15s}" for r in row))

# %% [markdown]
# ### Final distances per cell
#
# Bars: mean over seeds; dots: the individual seeds; dashed line and band: vanilla's mean ± sd.

# %%
cells = list(CELLS)
fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
for ax, (metric, label) in zip(axes, FD_LABELS.items(),
                               strict=True):
    base, spread = final["vanilla"][metric].mean(), sd["vanilla"][metric]
    ax.axhspan(base - spread, base + spread, color="grey", alpha=0.2, label="vanilla mean ± 1 sd")
    ax.axhline(base, color="grey", ls="--", lw=1, label="vanilla mean")
    for i, cell in enumerate(cells):
        values = final[cell][metric]
        group = 0 if cell in ("vanilla", "min-SNR", "P2") else 1 + list(METHODS).index(
            cell.split(" / ")[0])
        ax.bar(i, values.mean(), color=f"C{group}", alpha=0.75)
        ax.plot(np.full(len(values), i), values, "k.", ms=7)
    ax.set_xticks(range(len(cells)), cells, rotation=40, ha="right")
    ax.set(ylabel=lower_is_better(f"final {label}"),
           title=f"{label} at step {eval_steps[-1]} ({len(seeds)} seeds)")
GROUP_KEYS = [patch_key("vanilla, loss weightings", color="C0", alpha=0.75),
              *(patch_key(m, color=f"C{1 + j}", alpha=0.75) for j, m in enumerate(METHODS))]
fig.tight_layout()
fig.legend(handles=[*axes[0].get_legend_handles_labels()[0], *GROUP_KEYS, seed_dots_key(ms=6)],
           loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize="small",
           title="bars: mean over seeds, coloured by method")
savefig(fig, "04_ant_table", profile)

# %% [markdown]
# ### Convergence: distance over training (mean over seeds)
#
# One panel per method with its three clusterings; vanilla (black) and the two loss weightings
# (grey) repeat in every panel. The band is vanilla's ± one standard deviation over seeds.

# %%
fig, axes = plt.subplots(2, len(METHODS), figsize=(15, 7.5), sharex=True, sharey="row")
for row, (metric, label) in enumerate(FD_LABELS.items()):
    for col, method in enumerate(METHODS):
        ax = axes[row, col]
        mean, spread = curves["vanilla"][metric].mean(0), curves["vanilla"][metric].std(0)
        ax.fill_between(eval_steps, mean - spread, mean + spread, color="k", alpha=0.1,
                        label="vanilla ± 1 sd over seeds")
        ax.plot(eval_steps, mean, "k-o", ms=3, label="vanilla")
        for cell, style in (("min-SNR", "--"), ("P2", ":")):
            ax.plot(eval_steps, curves[cell][metric].mean(0), style, color="grey", label=cell)
        for i, clustering in enumerate(CLUSTERINGS):
            ax.plot(eval_steps, curves[f"{method} / {clustering}"][metric].mean(0), "o-", ms=3,
                    color=f"C{i}", label=f"{method} / {clustering}")
        ax.set(yscale="log", title=f"{method}: {label} (mean over seeds)",
               xlabel="training step" if row == 1 else "",
               ylabel=lower_is_better(label) if col == 0 else "")
        ax.legend(fontsize="x-small")
fig.tight_layout()
savefig(fig, "04_ant_convergence", profile)

# %% [markdown]
# ## What the methods learn: weights per cluster over training
#
# `history.method_weights[step][i]` is the multiplier of $\nabla L_i$ in that step's update.
# Top: UW's $0.5\,e^{-s_i}$ with $s_i$ trained at lr 0.025; the thin lines are its optimum
# $1 / (2 L_i)$ from the measured cluster losses (averaged over 25 steps). Low-loss clusters (high
# noise, cluster 5) get the largest weights. Bottom: NashMTL's $\alpha$ (re-solved every 25
# steps, constant in between). Seed-0 runs; cluster 1 holds the lowest timesteps.

# %%
window = 1 if config.is_smoke(profile) else 25
fig, axes = plt.subplots(2, len(CLUSTERINGS), figsize=(15, 7), sharex=True)
uw_end, uw_optimum = {}, {}
for col, clustering in enumerate(CLUSTERINGS):
    for row, method in enumerate(("UW", "Nash")):
        history = results[f"{method} / {clustering}", seeds[0]].history
        weights = np.array(history.method_weights)
        losses = np.array(history.cluster_losses)
        kernel = np.ones(window) / window
        smooth = np.stack([np.convolve(losses[:, i], kernel, "valid") for i in range(
            num_clusters)], 1)
        ax = axes[row, col]
        weight_intervals = intervals[clustering, seeds[0]]
        for i in range(num_clusters):
            ax.plot(history.steps, weights[:, i], color=f"C{i}",
                    label=cluster_label(i, weight_intervals[i]))
            if method == "UW":
                ax.plot(history.steps[window - 1:], 0.5 / smooth[:, i], color=f"C{i}", lw=0.6,
                        alpha=0.6)
        if method == "UW":
            uw_end[clustering], uw_optimum[clustering] = weights[-1], 0.5 / smooth[-1]
            ax.set(yscale="log")
        ax.set(title=f"{method} / {clustering}", xlabel="training step" if row == 1 else "",
               ylabel="UW weight 0.5 exp(-s_i)" if method == "UW" else "Nash alpha_i")
fig.suptitle(f"thick lines: the weights learned (seed-{seeds[0]} runs); thin lines (UW): its "
             f"optimum 1 / (2 L_i), L_i averaged over {window} steps", fontsize="medium")
fig.tight_layout()
for col, clustering in enumerate(CLUSTERINGS):  # the same clusters in both rows of a column
    axes[1, col].legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2,
                        fontsize="small", title=f"{clustering} clusters (seed {seeds[0]})")
savefig(fig, "04_ant_weights", profile)
for clustering in CLUSTERINGS:
    print(f"UW / {clustering}: final weights {np.round(uw_end[clustering], 2)}, "
          f"1 / (2 L_i) {np.round(uw_optimum[clustering], 2)}")

# %% [markdown]
# ### Samples (seed-0 runs, the same initial noise for every model)

# %%
shown = ["vanilla", "min-SNR", "UW / snr", "PCGrad / affinity", "Nash / timestep", "UW / timestep"]
fig, axes = plt.subplots(2, 3, figsize=(12, 8.5))
fig.suptitle(f"seed {seeds[0]}, the same initial noise for every model; the title gives that "
             f"run's final {lower_is_better(FD_LABELS['fd_pixel'])}", fontsize="medium")
for ax, cell in zip(axes.flat, shown, strict=True):
    run = results[cell, seeds[0]]
    show_images(ax, generate(run.ema_model(), run.config, 40), nrow=8,
                title=f"{cell}: {FD_LABELS['fd_pixel']} {final[cell]['fd_pixel'][0]:.2f}")
fig.tight_layout()
savefig(fig, "04_ant_samples", profile)

# %% [markdown]
# ## Verdicts against vanilla
#
# For each cell and metric: the gap between vanilla's mean and the cell's (positive: the cell is
# lower, i.e. better for the distances and KID), the larger across-seed standard deviation of the
# two, and the paired per-seed differences. For precision and recall higher is better.

# %%
verdicts = {}
for cell in cells[1:]:
    for metric in METRICS:
        sign = -1 if metric in ("precision", "recall") else 1
        gap = sign * (final["vanilla"][metric].mean() - final[cell][metric].mean())
        spread = max(sd["vanilla"][metric], sd[cell][metric])
        verdicts[cell, metric] = (
            "one seed: no verdict" if len(seeds) < 2
            else "better" if gap > spread
            else "worse" if -gap > spread
            else "within noise"
        )
        paired = sign * (final["vanilla"][metric] - final[cell][metric])
        if metric in ("fd_pixel", "fd"):
            print(f"{cell:18s} {metric:8s} gap {gap:+.3f} spread {spread:.3f} "
                  f"paired {np.round(paired, 3)} -> {verdicts[cell, metric]}")
for metric in METRICS:
    counts = {v: sum(verdicts[c, metric] == v for c in cells[1:])
              for v in ("better", "within noise", "worse")}
    print(f"{metric:9s} vs vanilla over {len(cells) - 1} cells: {counts}")

# %% [markdown]
# ## Findings at cpu scale (seeds 0, 1, 2; 500 steps; `make figures`, 2026-12-02)
#
# Final distances, mean ± sd over the three seeds (vanilla: pixel FD 1.12 ± 0.04, classifier FD
# 3.28 ± 0.03). This run has the EMA warm-up and NashMTL's published update scale (solved on the
# raw Gramian, update clipped at norm 1); earlier runs had neither.
#
# - **The paper's Table 1 does not reproduce in the FID-like metric.** In classifier-feature FD,
#   of the nine method x clustering cells 2 beat vanilla beyond the spread (Nash / affinity
#   2.78 ± 0.27, PCGrad / affinity 2.90 ± 0.12), 5 are within noise and 2 are clearly worse:
#   UW on timestep and SNR clusters (4.74 ± 0.18 and 4.50 ± 0.13, every seed worse).
# - **In pixel FD most cells do beat vanilla**: 7 of 11 (Nash on every clustering, 0.97-0.98;
#   UW on SNR and affinity clusters, 1.06 and 0.94; PCGrad / timestep, 1.08; min-SNR, 1.00),
#   while PCGrad / affinity is worse (1.45 ± 0.10). Precision rises in 10 cells and falls in
#   none; recall falls in 7, most for P2 and UW on timestep and SNR clusters (0.78-0.83 vs 0.90).
# - **The two metrics disagree for UW.** Its weights end within 1-12 % of $1/(2L_i)$ (inside the
#   step-to-step fluctuation of that target) and span a factor of about 250 between the lowest-
#   and highest-noise clusters (6.4 vs 1,600 on timestep clusters), so it trains almost only the
#   high-noise tasks: the global layout of the samples (pixel statistics) holds or improves, the
#   digit identity the classifier sees degrades.
# - **Nash's alpha is unstable between re-solves**: every 25 steps the high-noise clusters' alpha
#   jumps by an order of magnitude (weights figure) while the lowest-noise cluster's stays
#   steady; the residual check passed at every solve, so this is the Gramian changing, not the
#   solver.
# - **Baselines.** min-SNR-5 beats vanilla in both metrics (pixel 1.00 ± 0.06, feature
#   3.00 ± 0.08, every seed); P2 is within noise in pixels and worse in features (3.92). The
#   paper's "UW beats min-SNR" (their DiT table) is not supported: the best UW cell (affinity)
#   ties min-SNR in pixels (0.94 ± 0.06 vs 1.00 ± 0.06) and in features (3.12 ± 0.20 vs
#   3.00 ± 0.08).
# - **Affinity clusters** from this small U-Net are narrow at low noise and wide at high noise
#   ((0-49), (50-199 or 50-149), ..., (500 or 550-999)), unlike the equal-width and SNR
#   clusters; on them every method is at least level with vanilla in features.
#
# Caveats: 500 steps is early training (every distance is still falling steeply at the end),
# the model has 160k parameters, and the "beats" rule (gap > larger sd) is loose with 3 seeds:
# it calls a difference in about 21 % of comparisons where there is none.
# The paper trains ADM/LDM for hundreds of thousands of steps on FFHQ and CelebA-HQ.

# %% [markdown]
# ## What this run supports
#
# Every profile: nothing beyond running (a non-finite loss or metric stops a run with an error).
# Under `cpu` and `paper`: every cell trains to a falling distance (pixel and classifier FD, mean over seeds,
# first evaluation against the last), and UW's weights end near $1/(2L_i)$ with the largest
# weight on the cluster of lowest loss, as the paper describes. "Near" is measured against the
# run's own noise: the target $1/(2L_i)$ of single steps fluctuates over the last 25 steps, and
# the learned weight must lie within 3 standard deviations of that fluctuation (in log space) of
# its smoothed value. A fixed 10 % margin held on one machine and failed on another (the noisy,
# still-growing weight of the highest-noise cluster). Which cells beat vanilla is printed above and discussed in the findings; it is not
# asserted, because several verdicts rest on gaps of one or two seed spreads.

# %%
# (Non-finite losses and metrics stop a run with an error; nothing to assert about them here.)
if not config.is_smoke(profile):
    for cell in CELLS:
        for metric in ("fd_pixel", "fd"):
            first, last = curves[cell][metric].mean(0)[[0, -1]]
            assert last < first, f"{cell}: {metric} did not fall ({first:.3f} -> {last:.3f})"
    for clustering in CLUSTERINGS:
        losses = np.array(results[f"UW / {clustering}", seeds[0]].history.cluster_losses)
        lowest = losses[-window:].mean(0).argmin()
        assert uw_end[clustering].argmax() == lowest, (
            f"UW / {clustering}: the largest weight is not on the lowest-loss cluster {lowest}: "
            f"{uw_end[clustering]}"
        )
        gap = np.abs(np.log(uw_end[clustering] / uw_optimum[clustering]))
        noise = np.log(0.5 / losses[-window:]).std(axis=0)  # single steps' targets, log space
        assert (gap <= 3 * noise).all(), (
            f"UW / {clustering}: weights {uw_end[clustering]} are further from 1/(2 L_i) "
            f"{uw_optimum[clustering]} than 3x its fluctuation (log gap {gap}, noise {noise})"
        )
print({cell: verdicts[cell, "fd_pixel"] for cell in cells[1:]})

# %% [markdown]
# The numbers above as data: `results.json` in this run's folder (`mtl_diffusion.results.load_results()` reads a batch of runs into one DataFrame).

# %%
this_run.save_results(
    {"final": final, "verdicts": verdicts, "uw_weights": uw_end}, config=cfg, seeds=seeds
)
