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
# # 03 · Interval clustering of timesteps
#
# **The method (ANT, Go et al. 2023).** To run multi-task methods on $T = 1000$ denoising tasks,
# ANT first groups the timesteps into $k$ *contiguous* intervals, then treats each interval as one
# task. The split minimises a summed per-interval cost, solved exactly by dynamic programming.
# Three costs, each with the interval's centre $c$:
#
# - **timestep**: equal-width intervals (what ANT's training code uses for "timestep");
# - **SNR**: $\sum_{t \in I} |\log\mathrm{SNR}(t) - \log\mathrm{SNR}(c)|$ — intervals of similar
#   noise level (log-SNR as in the paper's figures; raw SNR shown for contrast);
# - **task affinity**: $-\sum_{t \in I} \mathrm{TAS}(c, t)$ — intervals whose tasks agree with
#   their centre task, from the gradient-cosine affinity that notebook 01 measured.
#
# **What this notebook shows.** The three clusterings for $k = 2..8$ on the linear and cosine
# schedules, drawn over the log-SNR curve and over the affinity heatmaps (U-Net and DiT, linear
# schedule: the schedule they were trained with); how the clusters differ; and the speed of
# `mtl_diffusion.clustering.interval_clustering` (an $O(kT^2)$ vectorised DP) at $T = 1000$ and
# $k = 8$.
#
# **How to read the figures.** Each row of coloured segments is one clustering (top row $k = 2$,
# bottom row $k = 8$); the grey curve is log-SNR against $t$. On the heatmaps the squares on the
# diagonal are the affinity clusters; ticks along the top and the right edge mark the timestep
# and log-SNR boundaries for the same $k$.

# %% tags=["parameters"]
profile: str = "cpu"  # smoke (CI, seconds) | cpu (laptop) | paper (GPU) | paper-smoke
seed: int = 0  # training seed of notebook 01 (the same value reuses its cached affinity)
num_bins: int = 0  # affinity bins as in notebook 01; 0: 20 (10 under smoke)
steps: int = 0  # training steps as in notebook 01; 0: 1000 under cpu, else the profile's
k_max: int = 8  # largest k (clusterings for every k from 2 up to k_max)
k_shown: int = 5  # k drawn over the heatmaps (ANT uses 5; the DTR code 8)
config_overrides: str = ""  # more config overrides, applied last: space-separated key assignments

# %%
from mtl_diffusion import notebook

this_run = notebook.start("03_interval_clustering", globals())  # strict parameters, run folder, 1 thread

import time

import matplotlib.pyplot as plt
import numpy as np

from mtl_diffusion import config
from mtl_diffusion.affinity import affinity_run_steps, default_num_bins, task_affinity
from mtl_diffusion.builders import schedule_from_config
from mtl_diffusion.clustering import (
    affinity_clusters,
    affinity_cost,
    cluster_index,
    interval_clustering,
    snr_clusters,
    snr_cost,
    timestep_clusters,
    timestep_cost,
    validate_intervals,
)
from mtl_diffusion.plotting import interval_keys, line_key, patch_key, savefig, set_style

set_style()
archs = {"unet": "U-Net", "dit": "DiT"}
overrides = affinity_run_steps(profile, steps) | config.parse_overrides(config_overrides)
cfgs = {arch: config.load(profile, overrides | {"model.arch": arch}, seed=seed) for arch in archs}
T = cfgs["unet"].diffusion.num_timesteps
schedules = {
    name: schedule_from_config(config.load(profile, {"diffusion.schedule": name}))
    for name in ("linear", "cosine")
}
num_bins = num_bins or default_num_bins(cfgs["unet"])
width = T // num_bins
ks = list(range(2, k_max + 1))
print(f"T = {T}, k = {ks}, affinity on {num_bins} bins of {width} steps "
      f"(trained with the {cfgs['unet'].diffusion.schedule} schedule)")

# %% [markdown]
# ## The clusterings
#
# `task_affinity` returns notebook 01's averaged gradient-cosine matrix (from the cache when 01
# ran with the same profile, seed and steps; otherwise it trains the runs first).

# %%
start = time.perf_counter()
tas = {arch: task_affinity(c, num_bins) for arch, c in cfgs.items()}
print(f"task affinity for {list(archs)} in {time.perf_counter() - start:.1f} s")

clusters = {}  # (schedule, objective) -> {k: intervals}
for name, schedule in schedules.items():
    clusters[name, "timestep"] = {k: timestep_clusters(T, k) for k in ks}
    clusters[name, "log-SNR"] = {k: snr_clusters(schedule, k) for k in ks}
    clusters[name, "raw SNR"] = {k: snr_clusters(schedule, k, use_log=False) for k in ks}
for arch in archs:
    clusters["linear", f"affinity ({archs[arch]})"] = {
        k: affinity_clusters(tas[arch], k, bin_width=width) for k in ks
    }
for (name, objective), by_k in clusters.items():
    print(f"{name:6} {objective:18} k={k_shown}: {by_k[k_shown]}")

# %%
def draw_stripes(ax, by_k, log_snr, title):
    """One row of alternating segments per k, with the log-SNR curve on a twin axis."""
    for k, intervals in by_k.items():
        for i, (s, e) in enumerate(intervals):
            ax.barh(k, e - s + 1, left=s, height=0.8, color=f"C{i % 10}", edgecolor="white", lw=0.5)
    ax.set(xlim=(0, T), ylim=(max(by_k) + 0.6, min(by_k) - 0.6), xlabel="timestep t",
           ylabel="k (intervals in the row)", title=title)
    ax.grid(False)
    twin = ax.twinx()
    twin.plot(np.arange(T), log_snr, color="0.3", lw=1.5)
    twin.set_ylabel("log SNR(t)", color="0.3")
    twin.grid(False)


STRIPE_KEYS = [*interval_keys(k_max, "interval"), line_key("log SNR(t) (right axis)", color="0.3")]


fig, axes = plt.subplots(2, 3, figsize=(16, 7.5), layout="constrained")
for row, (name, schedule) in enumerate(schedules.items()):
    for col, objective in enumerate(("timestep", "log-SNR", "raw SNR")):
        draw_stripes(axes[row, col], clusters[name, objective], schedule.log_snr().numpy(),
                     f"{name} schedule: {objective} clusters")
fig.legend(handles=STRIPE_KEYS, loc="outside lower center", ncol=len(STRIPE_KEYS),
           fontsize="small", title="colour: the interval's place in its row, from low t")
savefig(fig, "03_interval_clustering", profile)

# %% [markdown]
# ## Over the affinity heatmaps
#
# Left: the averaged gradient-cosine affinity (linear schedule) with the affinity clusters for
# $k$ = `k_shown` as squares, and the timestep (top edge) and log-SNR (right edge) boundaries for
# the same $k$. Middle: the affinity clusters for every $k$. Right: the mean affinity between
# distinct bins of the same cluster (bins assigned by their centre) — how well each clustering
# keeps agreeing tasks together.

# %%
centres = (np.arange(num_bins) * width + (width - 1) // 2).astype(np.int64)
off_diagonal = ~np.eye(num_bins, dtype=bool)


def within_affinity(matrix, intervals):
    labels = cluster_index(intervals, centres)
    same = (labels[:, None] == labels[None, :]) & off_diagonal
    return matrix[same].mean()


within = {}
fig, axes = plt.subplots(2, 3, figsize=(17, 10), layout="constrained")
log_snr_linear = schedules["linear"].log_snr().numpy()
for row, arch in enumerate(archs):
    ax_map, ax_stripes, ax_within = axes[row]
    image = ax_map.imshow(tas[arch], cmap="RdBu_r", vmin=-1, vmax=1, extent=(0, T, T, 0))
    fig.colorbar(image, ax=ax_map, shrink=0.8, location="left",
                 label="gradient-cosine affinity\n(red: agree, blue: conflict)")
    ax_map.grid(False)
    for s, e in clusters["linear", f"affinity ({archs[arch]})"][k_shown]:
        ax_map.add_patch(plt.Rectangle((s, s), e - s + 1, e - s + 1, fill=False, lw=2.5, ec="k"))
    for s, _ in clusters["linear", "timestep"][k_shown][1:]:
        ax_map.plot([s, s], [0, -T * 0.04], color="C2", lw=2.5, clip_on=False)
    for s, _ in clusters["linear", "log-SNR"][k_shown][1:]:
        ax_map.plot([T, T * 1.04], [s, s], color="C4", lw=2.5, clip_on=False)
    ax_map.set(title=f"{archs[arch]}: affinity clusters, k = {k_shown}", xlabel="timestep t",
               ylabel="timestep t")
    draw_stripes(ax_stripes, clusters["linear", f"affinity ({archs[arch]})"], log_snr_linear,
                 f"{archs[arch]}: affinity clusters (linear schedule)")
    for objective in ("timestep", "log-SNR", f"affinity ({archs[arch]})"):
        values = [within_affinity(tas[arch], clusters["linear", objective][k]) for k in ks]
        within[arch, objective] = values
        ax_within.plot(ks, values, "o-", label=f"{objective} clusters")
    ax_within.set(xlabel="k", ylabel="mean affinity between bins of one cluster",
                  title=f"{archs[arch]}: agreement inside the clusters")
    ax_within.legend()
MAP_KEYS = [patch_key(f"affinity clusters, k = {k_shown}", fill=False, edgecolor="k"),
            line_key(f"timestep-cluster boundaries, k = {k_shown} (top edge)", color="C2", lw=2.5),
            line_key(f"log-SNR-cluster boundaries, k = {k_shown} (right edge)", color="C4", lw=2.5)]
fig.legend(handles=MAP_KEYS, loc="outside lower left", fontsize="small", title="left column")
fig.legend(handles=STRIPE_KEYS, loc="outside lower right", ncol=3, fontsize="small",
           title="middle column, colour: the interval's place in its row, from low t")
savefig(fig, "03_interval_clustering_affinity", profile)
for (arch, objective), values in within.items():
    print(f"{archs[arch]:6} {objective:18} within-cluster affinity k=2..{k_max}: "
          + " ".join(f"{v:.2f}" for v in values))

# %% [markdown]
# ## How the clusters differ
#
# Interval widths for $k$ = `k_shown` (low noise first). What the `cpu` run (seed 0, the
# affinity of notebook 01) showed:
#
# - **timestep**: equal widths, blind to the schedule and the model.
# - **log-SNR**: follows the curve, so intervals are narrow where log-SNR changes fast and wide
#   where it is flat: 153, 241, 230, 199, 177 steps on the linear schedule; on the cosine
#   schedule, whose log-SNR is nearly linear in the middle and steep at both ends, 133, 239, 281,
#   228, 119. **Raw SNR** is dominated by the huge SNR of the first few steps and spends almost
#   every cut there (1, 1, 3, 13, 982): why the paper clusters log-SNR.
# - **affinity**: the lowest-noise bin (t < 50) gets an interval of its own from k = 4 on for
#   both models (it agrees least with the rest), intervals widen with $t$, and everything from
#   t = 500 (U-Net) or 600 (DiT) on stays in one interval for k = 5 — the high-noise block of the
#   heatmap.
#   Like log-SNR it cuts finely at low noise, but it merges the high-noise tasks that log-SNR
#   still splits, and it differs between the two models (U-Net 50, 150, 150, 150, 500; DiT 50,
#   150, 150, 250, 400).
#
# By its own measure (mean affinity within clusters) the affinity clustering keeps agreeing tasks
# together best at every k (k = 5: U-Net 0.95 against 0.89 for log-SNR and 0.88 for timestep; DiT
# 0.96, 0.91, 0.89). Whether that helps training is notebook 04's question.

# %%
for (name, objective), by_k in clusters.items():
    widths = [e - s + 1 for s, e in by_k[k_shown]]
    print(f"{name:6} {objective:18} widths: {widths}")

# %% [markdown]
# ## Speed: the $O(kT^2)$ DP at $T = 1000$, $k = 8$
#
# Time to build each cost matrix and solve the DP (best of three). The affinity objective uses
# the U-Net's bin-level matrix expanded to one task per timestep (a $1000 \times 1000$ TAS, as in
# the paper). `benchmarks/bench_clustering.py` runs a direct transcription of the published
# $O(kT^3)$ pure-Python recurrence on the same timestep and log-SNR objectives (and a synthetic
# smooth affinity) in one process; it measured this DP **30x** (timestep), **347x** (log-SNR) and
# **226x** (affinity) faster at $T = 1000$, $k = 8$, on the earlier 2-core AMD EPYC machine
# under load (`make figures` does not rerun it). The notebook does not rerun the slow path (it
# takes minutes per objective). Measured here under `cpu` in the `make figures` run of
# 2026-12-03 (a clean clone, 2-core Intel Xeon, JOBS=2; two notebooks at a time on 2 cores):
# 32 ms (timestep), 37 ms (log-SNR) and 38 ms (affinity), cost matrix and DP together.

# %%
tas_full = np.repeat(np.repeat(tas["unet"], width, axis=0), width, axis=1)
log_snr_values = schedules["linear"].log_snr().numpy()
builders = {
    "timestep": lambda: timestep_cost(T),
    "log-SNR": lambda: snr_cost(log_snr_values),
    "affinity": lambda: affinity_cost(tas_full),
}
timings = {}
for objective, build in builders.items():
    best_build, best_dp = np.inf, np.inf
    for _ in range(3):
        start = time.perf_counter()
        cost = build()
        middle = time.perf_counter()
        intervals = interval_clustering(cost, 8)
        best_build = min(best_build, middle - start)
        best_dp = min(best_dp, time.perf_counter() - middle)
    timings[objective] = (best_build, best_dp, intervals)
    print(f"{objective:9} cost matrix {best_build * 1e3:6.1f} ms, DP {best_dp * 1e3:6.1f} ms: "
          f"{intervals}")

# %% [markdown]
# ## What this run supports
#
# Every clustering is a partition of $0..T-1$ into $k$ contiguous intervals; the timestep
# objective gives equal widths; the affinity clusters fall on bin boundaries; raw SNR packs its
# cuts at lower timesteps than log-SNR (its last interval is the widest); the DP at $T = 1000$,
# $k = 8$ (including the T x T affinity objective) returns a valid partition.

# %%
for (name, objective), by_k in clusters.items():
    for k, intervals in by_k.items():
        assert len(validate_intervals(intervals, T)) == k, (name, objective, k)
        if objective.startswith("affinity"):
            assert all(s % width == 0 for s, _ in intervals), f"{name}: cut off a bin boundary"
for k in ks:
    widths = [e - s + 1 for s, e in clusters["linear", "timestep"][k]]
    assert max(widths) - min(widths) <= 1, f"k={k}: the timestep objective gave widths {widths}"
    for name in schedules:
        raw = clusters[name, "raw SNR"][k]
        log = clusters[name, "log-SNR"][k]
        assert raw[-1][0] <= log[-1][0], f"{name}, k={k}: raw SNR's last cut is not the lower one"
for _, _, intervals in timings.values():
    assert len(validate_intervals(intervals, T)) == 8, f"T = {T}: {len(intervals)} intervals"
print({objective: f"{(b + d) * 1e3:.0f} ms" for objective, (b, d, _) in timings.items()})

# %% [markdown]
# The numbers above as data: `results.json` in this run's folder (`mtl_diffusion.results.load_results()` reads a batch of runs into one DataFrame).

# %%
this_run.save_results(
    {"clusters": clusters, "dp_ms": {o: 1e3 * (b + d) for o, (b, d, _) in timings.items()}},
    seeds=[seed],
)
