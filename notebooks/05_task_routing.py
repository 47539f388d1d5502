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
# # 05 · Denoising Task Routing (DTR)
#
# **The paper's claim** (Park et al., ICLR 2024). Treat every timestep $t$ as a task and give each
# task its own subset of channels: task $t$ activates a contiguous window of
# $C_\beta = \lfloor\beta C\rfloor$ of a layer's $C$ channels, starting at channel
# $\mathrm{round}\big((t/(T-1))^\alpha\,(C - C_\beta)\big)$. Neighbouring timesteps share most
# channels (a task-affinity prior); with $\alpha > 1$ the window moves slowly at low $t$ and fast at
# high $t$, so high-noise tasks get more task-specific channels (a task-weight prior). The mask is a
# fixed buffer: no parameters, no extra compute. In a DiT block the block input is masked,
# $x + \mathrm{Block}(m_t \odot x)$; in the U-Net the mask sits between each GroupNorm and the
# zero-initialised layer after it. **Placement this notebook's results rest on:** the U-Net routes
# every GroupNorm -> zero-initialised layer pair including the output layer (the authors' stated
# rule; no ADM code was released), the DiT masks every block's input and leaves its final layer
# unrouted (as the published DiT code); `model.route_output` (arch | yes | no) switches the
# output layer. DTR lowers FID (DiT-L/2 ImageNet 12.59 -> 8.90; ADM FFHQ
# 3.12 -> 2.65) and converges faster, random routing (R-TR: a fixed random subset of $C_\beta$
# channels per task) raises it (16.18), and DTR adds to loss weightings (FFHQ DiT-B/2: vanilla
# 12.93, min-SNR 9.73, ANT-UW 9.30, all about 8.8 with DTR).
#
# **What this notebook measures.**
# 1. The masks for $\alpha < 1$, $\alpha = 1$, $\alpha > 1$ and random routing, and how many
#    channels two tasks share as a function of $|t_1 - t_2|$ (measured on the masks, against a
#    closed form). Cheap, every profile.
# 2. Vanilla vs DTR vs R-TR, 3 training seeds each, tracked over training: the **held-out
#    denoising loss** (test digits, 20 fixed timesteps, the same noise for every arm of a
#    replicate: `mtl_diffusion.heldout`) at every evaluation, the paired difference between arms
#    with its 95 % t-interval at each evaluation (so a delay that closes, or a gain that grows,
#    shows as a trend, not one endpoint), and the **steps an arm needs to reach vanilla's
#    loss** at each of vanilla's evaluations (at the last one: vanilla's final loss), i.e. the
#    convergence-speed claim in steps. Where training stops is placed on the shared
#    **calibration run** (the same U-Net trained the plain way for 3000 steps under cpu,
#    `mtl_diffusion.calibration`): the fraction of its held-out loss decrease each arm reaches.
# 3. Secondary: Fréchet distances (pixels, digits-classifier features) of the final EMA models,
#    printed beside the real-vs-real floor at the same sample size.
# 4. Under the paper profile only (and the smoke profiles, as a code path): the same arms for a
#    DiT, and DTR on top of min-SNR loss weighting and of ANT-UW (uncertainty weighting over
#    $k = 5$ timestep clusters with stratified sampling), the paper's loss-weight table.
#
# **What the cpu profile leaves out, and why.** The cpu budget (about 4000 U-Net training steps
# over all runs of this notebook) buys the three U-Net arms x 3 seeds at 400 steps each and
# nothing else. The DiT arms are dropped from the cpu run: the previous version of this notebook
# trained a width-64 DiT for 600 steps and it was far from drawing digits (classifier-feature FD
# 16.5 against a real floor near 1 and 2.9 for the U-Net), and a DiT calibration run that would
# show where such a DiT learns does not fit the budget; a model that is not yet learning the
# data would only add verdicts about initialisation. The loss-weight table (four more arms) does
# not fit either. Both stay in the paper profile.
#
# **How to read it.** Lower losses and distances are better. Runs with the same seed (one
# replicate) share their initial weights, data order, training timesteps and evaluation noise;
# every comparison is the paired difference across replicates (`mtl_diffusion.stats`) with its
# 95 % t-interval, and a verdict only when the interval excludes zero. With 3 replicates the
# t-interval is wide (t = 4.3); "no verdict" means the run cannot tell, not that the arms agree.

# %% tags=["parameters"]
profile: str = "cpu"  # smoke (CI, seconds) | cpu (laptop) | paper (GPU) | paper-smoke
seed: int = 0  # first training seed; the replicates use seed, seed + 1, ...
num_seeds: int = 0  # training seeds per variant; 0 keeps the default (smoke 2, else 3)
steps: int = 0  # training steps per run; 0 keeps this notebook's default for the profile
beta: float = 0.8  # DTR / R-TR: fraction of channels active per task
alpha: float = 4.0  # DTR: window speed (> 1 moves slowly at low t, fast at high t)
archs: str = ""  # comma-separated architectures: unet, dit; empty: cpu unet, else unet,dit
table_arch: str = "unet"  # architecture of the loss-weight table: unet | dit
loss_weight_table: str = ""  # DTR x {min-SNR, ANT-UW} rows: yes | no; empty: cpu no, else yes
jobs: int = 2  # training processes in parallel, one thread each (smoke trains in-process)
config_overrides: str = ""  # more config overrides, applied last: space-separated key assignments

# %%
from mtl_diffusion import notebook

this_run = notebook.start("05_task_routing", globals())  # strict parameters, run folder, 1 thread

import time

import matplotlib.pyplot as plt
import numpy as np

from mtl_diffusion import config
from mtl_diffusion.calibration import calibration_run, fraction_reached, steps_to_reach
from mtl_diffusion.evaluation import distances, feature_label, pixel_label, real_floor
from mtl_diffusion.heldout import (
    bits_per_dim_proposal,
    heldout_bits_per_dim,
    heldout_curves,
    heldout_grid,
    heldout_series,
)
from mtl_diffusion.plotting import (
    legend,
    line_key,
    lower_is_better,
    patch_key,
    savefig,
    set_style,
    show_images,
)
from mtl_diffusion.routing import dtr_mask, random_mask
from mtl_diffusion.runs import ARMS, CPU_ARM_SCHEDULE, generate, train_many
from mtl_diffusion.stats import check_verdicts, paired_difference, summarize

set_style()
# What the budget buys (cpu: the profile's default U-Net, the model size of the shared
# calibration run; under `make figures`, two notebooks at a time on 2 cores, one thread per run:
# 0.14 s/step for the vanilla arm, trained first in a slot of its own, 0.3 s/step for DTR and
# R-TR here): 3 arms x 3 seeds x 400 steps = 3600 training steps (884 s of training; 544 s wall
# for the 6 routed runs on two processes), held-out loss every 50 steps (8 evaluations per run),
# then 200 DDIM samples per final EMA model for the Fréchet distances (30 s for all 9). Smoke
# only proves the code path.
SCALE = config.by_profile({
    "smoke": {"train.steps": 4, "train.eval_every": 2, "train.checkpoint_every": 0},
    "paper-smoke": {"train.steps": 4, "train.eval_every": 2, "train.checkpoint_every": 0},
    "cpu": CPU_ARM_SCHEDULE,  # 400 steps, held-out loss every 50
    "paper": {"train.eval_every": 25_000},
}, profile)  # fmt: skip
FD_SAMPLES = config.by_profile({"smoke": 0, "cpu": 200, "paper": 0}, profile)  # 0: eval.num_samples
extra = config.parse_overrides(config_overrides)
base = config.load(profile, extra)  # the profile's base config: the shared calibration run's
SCALE = config.notebook_overrides(SCALE | {"eval.sample_metrics": False}, steps, config_overrides)
seeds = config.replicate_seeds(profile, seed, num_seeds or (2 if config.is_smoke(profile) else 0))
workers = 1 if config.is_smoke(profile) else jobs  # workers cost more than smoke runs
on_cpu = profile == "cpu"
arch_list = archs.split(",") if archs else (["unet"] if on_cpu else ["unet", "dit"])
with_table = {"yes": True, "no": False, "": not on_cpu}[loss_weight_table]
routing = {"model.routing_beta": beta, "model.routing_alpha": alpha}
VARIANTS = {
    "vanilla": {},
    "DTR": {"model.routing": "dtr"},
    "R-TR": {"model.routing": "random"},
}
MIN_SNR = {"diffusion.loss_weight": "min_snr"}
ANT_UW = {"mtl.method": "uw", "timesteps.sampler": "stratified"}
TABLE = {
    "min-SNR": MIN_SNR,
    "min-SNR + DTR": MIN_SNR | VARIANTS["DTR"],
    "ANT-UW": ANT_UW,
    "ANT-UW + DTR": ANT_UW | VARIANTS["DTR"],
}
runs = {(arch, name): ov for arch in arch_list for name, ov in VARIANTS.items()}
if with_table:
    runs |= {(table_arch, name): ov for name, ov in TABLE.items()}


def routed(s: int) -> dict:
    """The routing keys of a routed arm (left out of the others, so that the vanilla arm is the
    same run as 04's and 06's)."""
    return routing | {"model.routing_seed": s}


configs = {
    (arch, name, s): config.load(
        profile,
        SCALE | ov | {"model.arch": arch} | (routed(s) if ov.get("model.routing") else {}),
        seed=s,
    )
    for (arch, name), ov in runs.items()
    for s in seeds
}
cfg = configs["unet" if "unet" in arch_list else arch_list[0], "vanilla", seeds[0]]
S = cfg.train.steps
print(f"{len(configs)} runs: {len(runs)} arms {list(runs)} x {len(seeds)} seeds {seeds}, "
      f"{S} steps each, held-out loss every {cfg.train.eval_every} steps, batch "
      f"{cfg.train.batch_size}")
print(cfg)

# %% [markdown]
# ## The masks
#
# Each panel is one routing mask for a layer of $C$ channels (the DiT width): a row per task $t$
# (bottom: $t = 0$, least noise), dark = active. With $\alpha = 0.5$ the window moves fast at low
# $t$; $\alpha = 1$ moves it at constant speed; $\alpha = 4$ (the paper's default) keeps low-noise
# tasks on nearly the same channels and spends most of the movement on the high-noise half.
# Random routing has no structure: any two tasks share about $\beta C_\beta$ channels.
#
# Bottom left: the fraction of active channels two tasks share,
# $|m_{t_1} \wedge m_{t_2}| / C_\beta$, averaged over all pairs at distance $|t_1 - t_2|$. Bottom
# right: the same fraction between $t$ and $t + \Delta$ as a function of $t$, which shows *where*
# the window moves. Dots are measured on the boolean masks, lines are closed forms. A sliding
# window shares $C_\beta - |s(t_1) - s(t_2)|$ channels (for $\beta \ge 1/2$). With the
# continuous start $s = u^\alpha (C - C_\beta)$, $u = t/(T-1)$, $\delta = \Delta/(T-1)$ and
# $r = (C - C_\beta)/C_\beta$, the pair $(t, t + \Delta)$ shares the fraction
# $$1 - r\,\big((u + \delta)^\alpha - u^\alpha\big),$$
# and the average over all pairs at distance $\delta$ is
# $$1 - r\,\frac{1 - \delta^{\alpha+1} - (1-\delta)^{\alpha+1}}{(\alpha+1)(1-\delta)}.$$
# For random routing the expected fraction is $C_\beta / C$ for every pair of distinct tasks.
# The pair average barely tells $\alpha = 0.5$ from $\alpha = 4$; the local view can.

# %%
T, C = cfg.diffusion.num_timesteps, cfg.model.hidden_size
active = int(beta * C)
alphas = {f"DTR alpha = {a:g}": a for a in (0.5, 1.0, alpha)}
masks = {name: dtr_mask(T, C, beta, a) for name, a in alphas.items()}
masks["random (R-TR)"] = random_mask(T, C, beta, seed)
shift = 200  # Delta of the local view
distance, t_local = np.arange(1, T - 1), np.arange(T - shift)
delta, u = distance / (T - 1), t_local / (T - 1)
measured, measured_local = {}, {}
for name, mask in masks.items():
    shared = (mask.double() @ mask.double().T / active).numpy()
    measured[name] = np.array([np.diagonal(shared, d).mean() for d in distance])
    measured_local[name] = np.diagonal(shared, shift)
ratio = (C - active) / active
closed = {
    name: 1 - ratio * (1 - delta ** (a + 1) - (1 - delta) ** (a + 1)) / ((a + 1) * (1 - delta))
    for name, a in alphas.items()
}
closed_local = {
    name: 1 - ratio * ((u + shift / (T - 1)) ** a - u**a) for name, a in alphas.items()
}
closed["random (R-TR)"] = np.full_like(delta, active / C)
closed_local["random (R-TR)"] = np.full_like(u, active / C)

fig = plt.figure(figsize=(13, 8.5))
grid = fig.add_gridspec(2, 4, height_ratios=[1.1, 1])
for i, (name, mask) in enumerate(masks.items()):
    ax = fig.add_subplot(grid[0, i])
    ax.imshow(mask.numpy(), aspect="auto", origin="lower", cmap="Greys", interpolation="nearest")
    ax.set(title=name, xlabel="channel", ylabel="task t" if i == 0 else "")
    ax.grid(False)
ax_pair, ax_local = fig.add_subplot(grid[1, :2]), fig.add_subplot(grid[1, 2:])
for name in masks:
    (line,) = ax_pair.plot(distance, closed[name], lw=1.5, label=name)
    ax_pair.plot(distance[::50], measured[name][::50], "o", ms=4, color=line.get_color())
    ax_local.plot(t_local, closed_local[name], lw=1.5, color=line.get_color(), label=name)
    ax_local.plot(t_local[::50], measured_local[name][::50], "o", ms=4, color=line.get_color())
ax_pair.set(xlabel="|t1 - t2|", ylabel="shared fraction of active channels",
            title=f"mean over all task pairs (C = {C}, beta = {beta})")
ax_local.set(xlabel="t", ylabel="shared fraction of active channels",
             title=f"tasks t and t + {shift}: where the window moves (colours as on the left)")
legend(ax_pair, line_key("lines: closed form", color="grey"),
       line_key("dots: measured on the masks", color="grey", ls="None", marker="o", ms=4),
       fontsize="small")
fig.tight_layout()
fig.legend(handles=[patch_key("active channel", color="black"),
                    patch_key("inactive channel", color="white", edgecolor="0.5")],
           loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize="small",
           title=f"masks: one row per task t, {active} of {C} channels active")
savefig(fig, "05_task_routing_masks", profile)
for name in masks:
    err = max(np.abs(measured[name] - closed[name]).max(),
              np.abs(measured_local[name] - closed_local[name]).max())
    print(f"{name:16s} shared with t + {shift} at t = 0, 450, {T - 1 - shift}: "
          + ", ".join(f"{measured_local[name][t]:.3f}" for t in (0, 450, T - 1 - shift))
          + f"; max |measured - closed form| = {err:.3f}")

# %% [markdown]
# ## Train every run once, and the calibration run
#
# The calibration run is shared by every notebook of this model size (cached; trained here only
# if missing). Then every (arm, seed) in parallel worker processes, cached: a re-run loads them in
# seconds. The calibration run is a U-Net; under the paper profile a DiT arm is placed on the
# DiT's own calibration run.

# %%
start = time.perf_counter()
cal = {arch: calibration_run(config.apply(base, {"model.arch": arch}) if arch != base.model.arch
                             else base) for arch in arch_list}  # fmt: skip
cal_curve = {arch: heldout_series(c.history) for arch, c in cal.items()}
print(f"calibration runs {list(cal)}: {cal[arch_list[0]].config.train.steps} steps, "
      f"{len(cal_curve[arch_list[0]][0])} evaluations ({time.perf_counter() - start:.0f} s; "
      "near 0 when cached)")
start = time.perf_counter()
trained = train_many(list(configs.values()), ARMS, jobs=workers)
results = dict(zip(configs, trained, strict=True))
print(f"{len(results)} runs, {sum(r.history.seconds for r in results.values()):.0f} s of "
      f"training (evaluation excluded) in {time.perf_counter() - start:.0f} s wall (near 0 when "
      "cached)")


# %%
def curves(key: tuple, interval=None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, (seeds, evaluations) held-out loss) of arm `key` = (arch, name)."""
    steps_, values = heldout_curves([results[(*key, s)].history for s in seeds], interval)
    return np.array(steps_), values


def fraction(arch: str, value: float) -> float:
    """Fraction of `arch`'s calibration decrease that `value` reaches (nan under smoke, whose
    calibration of a few steps need not decrease)."""
    return fraction_reached(*cal_curve[arch], value, strict=not config.is_smoke(profile))


loss = {key: curves(key) for key in runs}
eval_steps = loss[next(iter(runs))][0]
reached = {key: np.array([fraction(key[0], v) for v in values[:, -1]])
           for key, (_, values) in loss.items()}
print(f"held-out loss at step {eval_steps[-1]} (mean ± sd over seeds) and the fraction of the "
      "calibration run's decrease it reaches")
for arch, c in cal_curve.items():
    print(f"  {arch} calibration: {c[1][0]:.4f} (step {c[0][0]}) -> {c[1][-1]:.4f} "
          f"(step {c[0][-1]})")
for key, (_, values) in loss.items():
    m, f = summarize(values[:, -1]), reached[key]
    fr = summarize(f) if np.isfinite(f).all() else None
    print(f"  {key[0]:5s} {key[1]:14s} {m.mean:.4f} ± {m.sd:.4f}   fraction reached "
          + (f"{fr.mean:.3f} ± {fr.sd:.3f}" if fr else "n/a (smoke)")
          + f"   {S / np.mean([results[(*key, s)].history.seconds for s in seeds]):.1f} steps/s")

# %% [markdown]
# ## Trained to where? The calibration run and every arm's held-out loss
#
# Left: the calibration run's held-out loss (20 timesteps) with this notebook's budget marked,
# and every run's curve (one thin line per seed). Right: the same runs over the budget only,
# mean over seeds.

# %%
arch = arch_list[0]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.3))
for ax, zoom in zip(axes, (False, True), strict=True):
    c_steps, c_loss = cal_curve[arch]
    keep = np.asarray(c_steps) <= (S if zoom else np.inf)
    ax.plot(np.asarray(c_steps)[keep], np.asarray(c_loss)[keep], color="grey", lw=2, marker=".")
    for i, name in enumerate(VARIANTS):
        _, values = loss[arch, name]
        if zoom:
            ax.plot(eval_steps, values.mean(0), color=f"C{i}", marker="o", label=name)
        else:
            for row in values:
                ax.plot(eval_steps, row, color=f"C{i}", lw=1, alpha=0.8)
    ax.axvline(S, color="black", ls=":")
    ax.set(xlabel="training step", yscale="log", ylabel=lower_is_better("held-out denoising loss"),
           title=f"{arch}: " + ("over the budget (mean over seeds)" if zoom
                                else "calibration run and every run (one line per seed)"))
legend(axes[0], line_key("calibration run (seed 0)", color="grey", lw=2, marker="."),
       *[line_key(name, color=f"C{i}", lw=1) for i, name in enumerate(VARIANTS)],
       line_key(f"budget S = {S}", ls=":"), fontsize="small")
legend(axes[1], line_key("calibration run (seed 0)", color="grey", lw=2, marker="."),
       fontsize="small")
fig.tight_layout()
savefig(fig, "05_task_routing_training", profile)

# %% [markdown]
# ## Gain or delay along training
#
# For each comparison A -> B, at every evaluation step: the paired difference of held-out loss,
# $100 \ln(L_B / L_A)$ (percent; negative: B lower), with its 95 % t-interval over seeds. Then the
# delay in steps: at each of A's evaluation steps $s$, the step at which B's curve (interpolated
# between its evaluations) first falls to A's loss at $s$, minus $s$ (positive: B needs more
# steps; at B's first evaluation the step is censored there, so an early lead reads as no
# delay). It is undefined when B never gets there within the budget; then the row says how many
# seeds did. At A's last evaluation this is "steps to reach A's final held-out loss".

# %%
comparisons = [(arch, "vanilla", "DTR") for arch in arch_list]
comparisons += [(arch, "vanilla", "R-TR") for arch in arch_list]
comparisons += [(arch, "DTR", "R-TR") for arch in arch_list]
if with_table:
    comparisons += [(table_arch, "vanilla", w) for w in ("min-SNR", "ANT-UW")]
    comparisons += [(table_arch, w, f"{w} + DTR") for w in ("min-SNR", "ANT-UW")]
gap, delay, reach = {}, {}, {}  # per comparison: one Comparison (or None) per evaluation
for arch, a, b in comparisons:
    la, lb = loss[arch, a][1], loss[arch, b][1]
    pct = 100 * (np.log(lb) - np.log(la))
    gap[arch, a, b] = [paired_difference(np.zeros(len(seeds)), pct[:, j])
                       for j in range(len(eval_steps))]
    steps_b = np.array([[steps_to_reach(eval_steps, lb[r], la[r, j])
                         for j in range(len(eval_steps))] for r in range(len(seeds))])
    reach[arch, a, b] = steps_b
    delay[arch, a, b] = [paired_difference(np.full(len(seeds), float(s)), steps_b[:, j])
                         if np.isfinite(steps_b[:, j]).all() else None
                         for j, s in enumerate(eval_steps)]
    print(f"{arch} {a} -> {b}: held-out loss difference (%) and delay (steps) at each step")
    for j, s in enumerate(eval_steps):
        d, n_ok = delay[arch, a, b][j], int(np.isfinite(steps_b[:, j]).sum())
        f = summarize(np.array([fraction(arch, v) for v in la[:, j]])).mean
        print(f"  step {s:6d} (A at {f:5.2f} of the calibration decrease): loss {gap[arch, a, b][j]}"
              f"; delay " + (str(d) if d else f"{b} reaches it in {n_ok}/{len(seeds)} seeds"))

# %%
shown = [c for c in comparisons if c[0] == arch_list[0]][:3]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.3))
for i, key in enumerate(shown):
    offset = (i - 1) * 0.012 * eval_steps[-1]
    for ax, series in zip(axes, (gap[key], delay[key]), strict=True):
        ok = [j for j, c in enumerate(series) if c is not None]
        x = eval_steps[ok] + offset
        mid = np.array([series[j].difference for j in ok])
        err = np.array([[series[j].difference - series[j].low, series[j].high - series[j].difference]
                        for j in ok]).T.reshape(2, -1)
        ax.errorbar(x, mid, yerr=err, marker="o", capsize=3, color=f"C{i + 3}",
                    label=f"{key[1]} -> {key[2]}")
for ax in axes:
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("training step (of A)")
axes[0].set(ylabel="100 ln(L_B / L_A): % held-out loss (B lower < 0)",
            title=f"{arch_list[0]}: held-out loss difference, 95 % t-interval over seeds")
axes[1].set(ylabel="steps B needs to reach A's loss minus A's step",
            title=f"{arch_list[0]}: delay (> 0: B slower), where every seed reaches it")
legend(axes[0], fontsize="small")
fig.tight_layout()
savefig(fig, "05_task_routing_gain", profile)

# %% [markdown]
# ### Where in $t$: the final difference per timestep
#
# The paired difference $100 \ln(L_B / L_A)$ at each of the 20 held-out timesteps at the last
# evaluation (95 % t-intervals): DTR's prior gives high-noise tasks more task-specific channels,
# so a gain, if any, would be expected there. Descriptive: no verdict is stated per timestep.

# %%
grid = heldout_grid(cfg.diffusion.num_timesteps)
per_t = {}
fig, ax = plt.subplots(figsize=(9, 4))
for i, key in enumerate(shown):
    arch, a, b = key
    cells = [paired_difference(100 * np.log(curves((arch, a), (t, t))[1][:, -1]),
                               100 * np.log(curves((arch, b), (t, t))[1][:, -1])) for t in grid]
    per_t[key] = cells
    mid = np.array([c.difference for c in cells])
    err = np.array([[c.difference - c.low, c.high - c.difference] for c in cells]).T
    ax.errorbar(np.array(grid) + (i - 1) * 8, mid, yerr=err, marker="o", ms=4, capsize=2,
                color=f"C{i + 3}", label=f"{a} -> {b}")
ax.axhline(0, color="black", lw=0.8)
ax.set(xlabel="timestep t of the held-out loss", ylabel="100 ln(L_B / L_A) at the last step (%)",
       title=f"{arch_list[0]}: per-timestep difference at step {eval_steps[-1]}, 95 % t-intervals")
legend(ax, fontsize="small")
fig.tight_layout()
savefig(fig, "05_task_routing_timesteps", profile)

# %% [markdown]
# ## Bits per dimension of the final EMA models (primary)
#
# The DDPM variational bound on the test split in bits per dimension
# (`mtl_diffusion.heldout.heldout_bits_per_dim`: a decoder discretized over the data's grey
# levels, the sum over $t$ estimated per image from 16 timesteps of one importance proposal
# shared by every arm, the replicate's evaluation noise). Paired differences as above.

# %%
start = time.perf_counter()
# test images of the bound, and of the exact bound that shapes the shared proposal
bpd_images, proposal_images = config.by_profile(
    {"smoke": (16, 8), "cpu": (1000, 32), "paper": (1000, 32)}, profile)
proposal = bits_per_dim_proposal(results[arch_list[0], "vanilla", seeds[0]].ema_model(), cfg,
                                 proposal_images)
bpd = {key: np.array([heldout_bits_per_dim(results[(*key, s)].ema_model(),
                                           results[(*key, s)].config, proposal, bpd_images)
                      for s in seeds]) for key in runs}  # fmt: skip
print(f"bits/dim at step {eval_steps[-1]} ({time.perf_counter() - start:.0f} s), mean ± sd "
      "over seeds:")
for key, v in bpd.items():
    print(f"  {key[0]:5s} {key[1]:14s} {summarize(v).mean:.4f} ± {summarize(v).sd:.4f}")
bpd_cmp = {(*c, "bpd"): paired_difference(bpd[c[0], c[1]], bpd[c[0], c[2]]) for c in comparisons}
for k, c in bpd_cmp.items():
    print(f"  {k[0]} {k[1]} -> {k[2]} bits/dim: {c}")

# %% [markdown]
# ## Secondary: Fréchet distances of the final EMA models
#
# Each final EMA model draws the same initial noise as the other arms of its replicate; the
# distances are printed beside the real-vs-real floor (as many real training images against the
# test split). Paired differences as above, on the distance itself.

# %%
start = time.perf_counter()
n_fd = FD_SAMPLES or cfg.eval.num_samples
floor = real_floor(cfg, n_fd)
samples = {k: generate(r.ema_model(), r.config, n_fd) for k, r in results.items()}
fd = {k: distances(x, results[k].config) for k, x in samples.items()}
FD_LABELS = {"fd_pixel": f"{pixel_label(cfg)} FD", "fd": f"{feature_label(cfg)} FD"}
print(f"{n_fd} DDIM-{cfg.eval.sampling_steps} samples per model "
      f"({time.perf_counter() - start:.0f} s); real floor: "
      + ", ".join(f"{FD_LABELS[m]} {floor[m]:.3f}" for m in FD_LABELS))
final_fd = {key: {m: np.array([fd[(*key, s)][m] for s in seeds]) for m in FD_LABELS}
            for key in runs}
for key in runs:
    print(f"  {key[0]:5s} {key[1]:14s} " + "   ".join(
        f"{FD_LABELS[m]} {summarize(v).mean:.3f} ± {summarize(v).sd:.3f}"
        for m, v in final_fd[key].items()))
fd_cmp = {(*c, m): paired_difference(final_fd[c[0], c[1]][m], final_fd[c[0], c[2]][m])
          for c in comparisons for m in FD_LABELS}
for k, c in fd_cmp.items():
    print(f"  {k[0]} {k[1]} -> {k[2]} {FD_LABELS[k[3]]}: {c}")

# %%
fig, axes = plt.subplots(len(arch_list), 3, figsize=(12, 3.1 * len(arch_list)), squeeze=False)
fig.suptitle(f"seed {seeds[0]}, the same initial noise for every model; titles: that run's "
             f"{lower_is_better(FD_LABELS['fd'])} (real floor {floor['fd']:.2f})",
             fontsize="medium")
for row, arch in enumerate(arch_list):
    for col, name in enumerate(VARIANTS):
        show_images(axes[row, col], samples[arch, name, seeds[0]][:40], nrow=8,
                    title=f"{arch} {name}: {fd[arch, name, seeds[0]]['fd']:.2f}")
fig.tight_layout()
savefig(fig, "05_task_routing_samples", profile)

# %% [markdown]
# ### Loss-weight orthogonality: does DTR add to min-SNR and ANT-UW? (paper profile)
#
# Rows: the loss weighting (constant = vanilla, min-SNR-5, ANT-UW over 5 timestep clusters);
# columns: without and with DTR; cells: final held-out loss, mean ± sd over seeds (the paired
# differences are in the tables above). In the paper's FFHQ DiT-B/2 table every weighting
# improves on vanilla and DTR improves every row further. Not trained under cpu (see the top).

# %%
if with_table:
    weightings = {"constant": ("vanilla", "DTR"), "min-SNR": ("min-SNR", "min-SNR + DTR"),
                  "ANT-UW": ("ANT-UW", "ANT-UW + DTR")}
    print(f"{table_arch}, final held-out loss\n{'weighting':10s} {'without DTR':>17s} "
          f"{'with DTR':>17s}")
    for weighting, pair in weightings.items():
        cells = [summarize(loss[table_arch, n][1][:, -1]) for n in pair]
        print(f"{weighting:10s} " + " ".join(f"{c.mean:8.4f} ± {c.sd:6.4f}" for c in cells))
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(n for pair in weightings.values() for n in pair):
        values = loss[table_arch, name][1][:, -1]
        ax.bar(i, values.mean(), color="C1" if "DTR" in name else "C0", alpha=0.7)
        ax.plot(np.full(len(values), i), values, "k.", ms=8)
    names = [n for pair in weightings.values() for n in pair]
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set(ylabel=lower_is_better(f"held-out loss at step {eval_steps[-1]}"),
           title=f"{table_arch}: bars mean over seeds, dots single seeds")
    legend(ax, patch_key("without DTR", color="C0", alpha=0.7),
           patch_key("with DTR", color="C1", alpha=0.7), fontsize="small")
    fig.tight_layout()
    savefig(fig, "05_task_routing_loss_weights", profile)
else:
    print("loss-weight table not trained under this profile (loss_weight_table=yes trains it)")

# %% [markdown]
# ## Findings at cpu scale
#
# The verdicts of this run are the ones printed above: the held-out loss difference with its
# 95 % t-interval at every evaluation, the delay in steps, and the secondary Fréchet distances
# beside their real floor. How far training got is the fraction of the calibration run's
# decrease printed for every arm: a verdict at a fraction well below 1 is about early training.
#
# The cpu run with default parameters (U-Net, 3 seeds, 400 steps; held-out loss every 50 steps;
# the `make figures` run of 2026-12-03: a clean clone, 2-core Intel Xeon, JOBS=2):
#
# - **Budget.** Vanilla and DTR reach 0.65 and 0.64 of the calibration decrease (0.0847 / 0.0848
#   at step 400 against 0.0730 at step 3,000), R-TR 0.41: early-to-mid training.
# - **DTR vs vanilla: no verdict at any of the 8 evaluations**, from -0.84 % [-6.1, +4.5] at step
#   50 to +0.14 % [-0.36, +0.65] at step 400; no delay or gain in steps either (-2.5 [-16, +11]
#   steps at step 200). The paper's DTR gain is not seen at this scale and budget.
# - **Random routing hurts at every evaluation**: +11.8 % [+9.2, +14.3] over vanilla at step 50,
#   +8.9 % [+6.4, +11.3] at step 400, and +8.7 % [+5.9, +11.5] over DTR; its delay grows (181
#   [144, 218] steps behind vanilla's level at step 200). This reproduces the paper's control.
# - **Bits/dim agree**: vanilla 3.317, DTR 3.318 (+0.001 [-0.089, +0.090], no verdict), R-TR
#   3.502 (+0.18 [+0.16, +0.21] over vanilla, +0.18 [+0.07, +0.30] over DTR: worse).
# - **Fréchet distances** (secondary, 200 samples, DDIM-50; real-vs-real floors at 200 images
#   1.25 classifier features, 0.98 pixels): only R-TR's classifier-feature FD is higher than
#   vanilla's (3.23 vs 2.71, +0.51 [+0.28, +0.74]); DTR vs vanilla gives no verdict (+0.03
#   [-0.40, +0.47]), nor does any pixel FD.
# - **Cost.** Under `make figures` (two notebooks at a time on 2 cores; 624 s for this notebook)
#   DTR and R-TR trained here at 3.3 and 3.4 steps/s (one thread each, two processes). Vanilla's
#   runs were loaded from the cache: trained first in a slot of their own, at 7.3 steps/s, so
#   their speed is not comparable, and this run does not measure what the masks cost against
#   vanilla; the two masked arms trained at about the same speed.
# - The DiT and the DTR x {min-SNR, ANT-UW} table run under the paper profile only (see above).
#
# ## What this run supports
#
# Every profile: the overlap of the masks as built matches its closed form (within 0.05), and
# every run's held-out loss is finite. Under cpu with at least 3 seeds: the calibration curve
# decreases and every arm's held-out loss falls over its budget (first evaluation against last,
# every seed); with the default parameters (the run the prose describes): the verdicts stated
# above (held-out loss at each stated step, and the secondary Fréchet distances) are the
# verdicts computed.

# %%
# The masks' overlap measured on the built masks against its closed form (the number of active
# channels per row holds by how masks are built and is not asserted).
error = max(np.abs(measured[n] - closed[n]).max() for n in alphas)
assert error < 0.05, f"mask overlap differs from its closed form by {error:.3f}"
error = max(np.abs(measured_local[n] - closed_local[n]).max() for n in alphas)
assert error < 0.05, f"local mask overlap differs from its closed form by {error:.3f}"
assert all(np.isfinite(values).all() for _, values in loss.values()), \
    "a run's held-out loss is not finite"
EVALS = range(50, 401, 50)  # the described run's evaluation steps
STATED_LOSS = {  # (arch, A, B, step): verdict of the held-out loss difference B - A
    **{("unet", "vanilla", "DTR", s): "no verdict" for s in EVALS},
    **{("unet", "vanilla", "R-TR", s): "higher" for s in EVALS},
    ("unet", "DTR", "R-TR", 400): "higher",
}
STATED_BPD = {("unet", "vanilla", "DTR", "bpd"): "no verdict",
              ("unet", "vanilla", "R-TR", "bpd"): "higher", ("unet", "DTR", "R-TR", "bpd"): "higher"}
STATED_FD = {  # (arch, A, B, metric): verdict of the final Fréchet distance difference
    ("unet", "vanilla", "DTR", "fd"): "no verdict", ("unet", "vanilla", "R-TR", "fd"): "higher",
    **{("unet", a, b, "fd_pixel"): "no verdict"
       for a, b in (("vanilla", "DTR"), ("vanilla", "R-TR"), ("DTR", "R-TR"))},
}  # fmt: skip
computed = {(*k, int(s)): gap[k][j].verdict for k in gap for j, s in enumerate(eval_steps)}
computed |= {k: c.verdict for k, c in (fd_cmp | bpd_cmp).items()}
described = (seed, num_seeds, steps, beta, alpha, archs, table_arch, loss_weight_table,
             config_overrides) == (0, 0, 0, 0.8, 4.0, "", "unet", "", "")
if on_cpu and len(seeds) >= 3:
    c_steps, c_loss = cal_curve[arch_list[0]]
    assert c_loss[-1] < c_loss[0], f"the calibration curve does not decrease: {c_loss}"
    for key, (_, values) in loss.items():
        assert (values[:, -1] < values[:, 0]).all(), \
            f"{key}: held-out loss did not fall over the budget: {values[:, [0, -1]]}"
    if described:
        differ, reverse = check_verdicts(STATED_LOSS | STATED_BPD | STATED_FD, computed)
        print("verdicts that differ from the prose (stated, computed):", differ or "none")
        assert not reverse, f"the run contradicts the verdicts stated above: {reverse}"

# %% [markdown]
# The numbers above as data: `results.json` in this run's folder
# (`mtl_diffusion.results.load_results()` reads a batch of runs into one DataFrame).

# %%
this_run.save_results(
    {"eval_steps": eval_steps.tolist(),
     "heldout_loss": {f"{k[0]}/{k[1]}": v for k, (_, v) in loss.items()},
     "fraction_reached": {f"{k[0]}/{k[1]}": v for k, v in reached.items()},
     "bits_per_dim": {f"{k[0]}/{k[1]}": v for k, v in bpd.items()},
     "loss_difference_pct": {f"{k[0]}/{k[1]}->{k[2]}": [
         {"step": int(s), "difference": c.difference, "low": c.low, "high": c.high,
          "verdict": c.verdict} for s, c in zip(eval_steps, v, strict=True)]
         for k, v in gap.items()},
     "steps_to_reach_A": {f"{k[0]}/{k[1]}->{k[2]}": v for k, v in reach.items()},
     "fd": {f"{k[0]}/{k[1]}": v for k, v in final_fd.items()}, "fd_floor": floor,
     "fd_difference": {"/".join(k): {"difference": c.difference, "low": c.low, "high": c.high,
                                     "verdict": c.verdict} for k, c in fd_cmp.items()}},
    config=cfg, seeds=seeds,
)
