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
# # 00 · Quickstart: a DDPM on the bundled digits
#
# A diffusion model learns to undo a fixed noising process. At noise level $t$ it sees
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$ and predicts $\varepsilon$;
# the loss at level $t$, $L_t = \mathbb{E}\,\|\varepsilon - \varepsilon_\theta(x_t, t)\|^2$, is one
# **denoising task**. Ordinary training draws $t$ uniformly, so it solves all $T = 1000$ tasks with
# one network at once: multi-task learning. The later notebooks ask how these tasks help or hurt
# each other; this one trains the plain all-task model that all of them compare against.
#
# **What it measures.** The forward process, the training loss, and the Fréchet distance (FD)
# between generated and held-out test digits over training, both in the feature space of a small
# digits classifier (our offline stand-in for Inception features) and in raw pixel space. On an
# image folder (the `paper` profiles) the features are those of the network in `eval.feature_net`
# (e.g. an Inception you exported), else downsampled pixels; the axis labels say which.
#
# **How to read the figures.** FD is 0 for identical distributions; real train-vs-test digits
# score about 0.34 in classifier features (computed below), the floor any model can reach here.
# Every evaluation uses the same initial noise (common random numbers), so the curve shows the
# model improving, not the sampler's luck.

# %% tags=["parameters"]
profile: str = "cpu"  # smoke (CI, seconds) | cpu (laptop) | paper (GPU) | paper-smoke
seed: int = 0  # training seed
arch: str = "unet"  # denoiser: unet | dit
steps: int = 0  # training steps; 0 keeps this notebook's default for the profile
config_overrides: str = ""  # more config overrides, applied last: space-separated key assignments

# %%
from mtl_diffusion import notebook

this_run = notebook.start("00_quickstart", globals())  # strict parameters, run folder, 1 thread

import matplotlib.pyplot as plt
import numpy as np
import torch

from mtl_diffusion import config
from mtl_diffusion.builders import dataset_from_config, schedule_from_config
from mtl_diffusion.evaluation import distances, feature_label, pixel_label
from mtl_diffusion.plotting import lower_is_better, savefig, set_style, show_images
from mtl_diffusion.runs import generate, train_run

set_style()
# What the budget buys: under cpu, 750 steps of the 634k-parameter U-Net at batch 128 with three
# evaluations (500 samples, DDIM-50) took 147 s for the whole notebook in the `make figures` run
# of 2026-12-03 (a clean clone, 2-core Intel Xeon, JOBS=2; two notebooks at a time on 2 cores),
# 139 s of it in train_run (101 s of training, evaluation excluded); the feature network had been
# trained before this notebook started. The profile's default is 1500 steps.
SCALE = config.by_profile(
    {"smoke": {}, "cpu": {"train.steps": 750, "train.eval_every": 250}, "paper": {}}, profile
)
overrides = SCALE | {"model.arch": arch} | ({"train.steps": steps} if steps else {})
overrides |= config.parse_overrides(config_overrides)
cfg = config.load(profile, overrides, seed=seed)
schedule = schedule_from_config(cfg)
print(cfg)

# %% [markdown]
# ## The forward process: one image, many tasks
#
# Top: digits noised to increasing $t$. Bottom: the log signal-to-noise ratio
# $\log \mathrm{SNR}(t) = \log \bar\alpha_t / (1 - \bar\alpha_t)$ for the linear and cosine
# schedules. With the linear schedule the SNR falls below 1 near $t = 250$, and by $t \approx 400$
# an 8x8 digit is no longer recognisable: most of the 1000 tasks denoise images with little signal.

# %%
test_x = dataset_from_config(cfg, "test")  # the held-out split (digits: 450 images)
shown_t = [0, 50, 100, 200, 400, 600, 800, 999]
x0 = test_x[:6]
generator = torch.Generator().manual_seed(seed)
rows = []
for t_value in shown_t:
    t = torch.full((len(x0),), t_value, dtype=torch.long)
    rows.append(schedule.q_sample(x0, t, torch.randn(x0.shape, generator=generator)))
noised = torch.stack(rows, dim=1).flatten(0, 1)  # image-major: one row per digit

fig, (ax_img, ax_snr) = plt.subplots(2, 1, figsize=(7, 7), height_ratios=[1.1, 1])
show_images(ax_img, noised, nrow=len(shown_t),
            title="one test digit per row; columns: x_t at t = " + ", ".join(map(str, shown_t)))
for name in ("linear", "cosine"):
    other = schedule_from_config(config.load(profile, {"diffusion.schedule": name}))
    used = " (this run)" if name == cfg.diffusion.schedule else ""
    ax_snr.plot(other.log_snr().numpy(), label=f"{name} schedule{used}")
ax_snr.axhline(0, color="grey", lw=0.8, label="SNR = 1 (as much noise as signal)")
ax_snr.set(xlabel="timestep t", ylabel="log SNR(t)", title="noise schedules")
ax_snr.legend()
fig.tight_layout()
savefig(fig, "00_forward_process", profile)

# %% [markdown]
# ## Train
#
# `train_run` trains once and caches the result (keyed by the config and the code version);
# an interrupted run resumes from its last checkpoint. The EMA weights are evaluated every
# `train.eval_every` steps.

# %%
run = train_run(cfg, "quickstart")
history = run.history
print(f"{cfg.train.steps} steps in {history.seconds:.0f} s "
      f"({cfg.train.steps / max(history.seconds, 1e-9):.1f} steps/s, evaluation excluded)")

# %%
train_x = dataset_from_config(cfg)
real_fd = distances(train_x[: max(len(test_x), 2000)], cfg)["fd"]  # digits: all 1,347
eval_steps, fd = history.eval_series("fd")
_, fd_pixel = history.eval_series("fd_pixel")

losses = np.asarray(history.losses)
window = max(1, len(losses) // 50)
smooth = np.convolve(losses, np.ones(window) / window, mode="valid")

fig, (ax_loss, ax_fd) = plt.subplots(1, 2, figsize=(11, 3.8))
ax_loss.plot(history.steps, losses, alpha=0.3, lw=0.8, label="per step")
ax_loss.plot(history.steps[window - 1 :], smooth, label=f"mean of {window}")
ax_loss.set(xlabel="training step", ylabel=lower_is_better("epsilon MSE"), yscale="log",
            title="training loss (batch mean)")
ax_loss.legend()
ax_fd.plot(eval_steps, fd, "o-", label=f"{feature_label(cfg)} FD")
ax_fd.plot(eval_steps, fd_pixel, "s--", label=f"{pixel_label(cfg)} FD")
ax_fd.axhline(real_fd, color="grey", ls=":",
              label=f"floor of the {feature_label(cfg)} FD: real train vs test ({real_fd:.2f})")
ax_fd.set(xlabel="training step", ylabel=lower_is_better("Fréchet distance"), yscale="log",
          title=f"{cfg.eval.num_samples} samples ({cfg.eval.sampler.upper()}-"
                f"{cfg.eval.sampling_steps}) against the test images")
ax_fd.legend(fontsize="small")
fig.tight_layout()
savefig(fig, "00_training", profile)
for e in history.evals:
    print({k: round(v, 3) for k, v in e.items()})

# %% [markdown]
# ## Samples from the EMA model, next to real test images

# %%
model = run.ema_model()
samples = generate(model, cfg, 100)
fig, (ax_fake, ax_real) = plt.subplots(1, 2, figsize=(10, 5))
show_images(ax_fake, samples, nrow=10, title=f"generated by the EMA model (step {cfg.train.steps}, "
                                     f"{feature_label(cfg)} FD {fd[-1]:.2f})")
show_images(ax_real, test_x[:100], nrow=10, title="real test images")
fig.tight_layout()
savefig(fig, "00_samples", profile)

# %% [markdown]
# ## What this run supports
#
# Every profile must produce finite samples. Under `cpu` and `paper` the distance must also fall
# during training: the first evaluation against the last. (Under `smoke` the model trains for seconds, so no quality claim is made.)

# %%
# (A non-finite loss or metric stops training with an error, so those need no assertion here.)
assert torch.isfinite(samples).all(), "the sampler produced non-finite samples"
if not config.is_smoke(profile):
    assert len(fd) >= 2, f"the claim needs two evaluations, got {len(fd)}: lower train.eval_every"
    assert fd[-1] < 0.5 * fd[0], f"FD did not fall enough: {fd[0]:.2f} -> {fd[-1]:.2f}"
    assert fd_pixel[-1] < fd_pixel[0], f"pixel FD did not fall: {fd_pixel[0]} -> {fd_pixel[-1]}"
print(f"{feature_label(cfg)} FD: {fd[0]:.2f} at step {eval_steps[0]} -> {fd[-1]:.2f} at step "
      f"{eval_steps[-1]}; real-vs-real floor {real_fd:.2f}")

# %% [markdown]
# The numbers above as data: `results.json` in this run's folder (`mtl_diffusion.results.load_results()` reads a batch of runs into one DataFrame).

# %%
this_run.save_results(
    {"eval_steps": eval_steps, "fd": fd, "fd_pixel": fd_pixel, "real_fd": real_fd,
     "feature_space": feature_label(cfg), "final_loss": float(losses[-1])},
    config=cfg, seeds=[seed],
)
