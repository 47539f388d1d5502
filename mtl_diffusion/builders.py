"""Config -> objects: the schedule, model, dataset, device, timestep sampler and MTL engine a
Config describes. The one place where the layers below (maths, models, engine) meet the Config;
affinity clusters, which need training runs, are resolved above, in mtl_diffusion.clusters."""

from __future__ import annotations

import torch
from torch import nn

from mtl_diffusion.clustering import Interval, snr_clusters, timestep_clusters
from mtl_diffusion.config import Config
from mtl_diffusion.curriculum import CurriculumTimesteps
from mtl_diffusion.data import load_dataset
from mtl_diffusion.decoded import folder_split
from mtl_diffusion.diffusion import Schedule, make_schedule
from mtl_diffusion.meme.assignment import SoftAssignment
from mtl_diffusion.meme.expert import MixedUNet
from mtl_diffusion.meme.multi_expert import MultiExpertDenoiser, default_ratios, mixed_experts
from mtl_diffusion.models import build_model
from mtl_diffusion.mtl.distributed import RankAverage
from mtl_diffusion.mtl.engine import MTLEngine
from mtl_diffusion.paths import artifacts_dir
from mtl_diffusion.routing import RoutingSpec
from mtl_diffusion.timesteps import StratifiedTimesteps, UniformTimesteps


def device_from_config(config: Config) -> torch.device:
    """config.train.device, checked: asking for CUDA without a CUDA build or GPU is an error."""
    if config.train.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "train.device='cuda' but torch.cuda.is_available() is False: install a CUDA build of "
            "torch (make setup TORCH=...) or override train.device='cpu'"
        )
    return torch.device(config.train.device)


def schedule_from_config(config: Config) -> Schedule:
    return make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)


def model_from_config(config: Config) -> nn.Module:
    """The denoiser named by config.model.arch, sized by the profile."""
    m, steps = config.model, config.diffusion.num_timesteps
    routing = RoutingSpec(m.routing, m.routing_beta, m.routing_alpha, m.routing_seed)
    placement = {} if m.route_output == "arch" else {"route_output": m.route_output == "yes"}
    if m.arch == "unet":
        return build_model(
            "unet",
            in_channels=config.data.channels,
            base_channels=m.base_channels,
            channel_mults=m.channel_mults,
            num_res_blocks=m.num_res_blocks,
            attention_levels=m.attention_levels,
            num_heads=m.num_heads,
            dropout=m.dropout,
            num_timesteps=steps,
            routing=routing,
            **placement,
        )
    if m.arch == "dit":
        return build_model(
            "dit",
            image_size=config.data.image_size,
            in_channels=config.data.channels,
            patch_size=m.patch_size,
            hidden_size=m.hidden_size,
            depth=m.depth,
            num_heads=m.num_heads,
            num_timesteps=steps,
            routing=routing,
            **placement,
        )
    if m.arch in ("mixed", "meme"):
        return mixed_from_config(config)
    return build_model("mlp", dim=2, hidden=m.hidden_size, depth=m.depth, num_timesteps=steps)


def mixed_from_config(config: Config) -> MixedUNet | MultiExpertDenoiser:
    """model.arch 'mixed': one MixedUNet (attention fraction model.attention_ratios, default
    0.5); 'meme': one MixedUNet per interval of config.mtl's clustering, expert j with
    attention fraction model.attention_ratios[j] (default ``meme.default_ratios(k)``), routed
    by t. Both sized by model.base_channels, channel_mults, num_res_blocks, num_heads, dropout
    (base_channels is each expert's width: k experts have about k times the parameters)."""
    m = config.model
    sizes = {
        "in_channels": config.data.channels,
        "base_channels": m.base_channels,
        "channel_mults": m.channel_mults,
        "num_blocks": m.num_res_blocks,
        "num_heads": m.num_heads,
        "pool": m.attention_pool,
        "dropout": m.dropout,
    }
    if m.arch == "mixed":
        ratio = m.attention_ratios[0] if m.attention_ratios else 0.5
        return MixedUNet(ratio=ratio, num_timesteps=config.diffusion.num_timesteps, **sizes)
    if m.arch != "meme":
        raise ValueError(f"model.arch must be 'mixed' or 'meme', got {m.arch!r}")
    intervals = interval_clusters(config)
    return mixed_experts(intervals, expert_ratios(config), **sizes)


def expert_ratios(config: Config) -> list[float]:
    """The attention fraction of every expert of model.arch 'meme' (see mixed_from_config)."""
    ratios = config.model.attention_ratios
    return list(ratios) if ratios else default_ratios(config.mtl.num_clusters)


def timesteps_from_config(config: Config, intervals: list[Interval] | None = None):
    """The timestep sampler named by config.timesteps.sampler; a stratified sampler over
    `intervals` when given, else over the clusters of config.mtl (timestep or snr clustering;
    affinity clusters come from a training run: mtl_diffusion.clusters.timesteps_for)."""
    T, ts = config.diffusion.num_timesteps, config.timesteps
    end = T - 1 if ts.t_end == -1 else ts.t_end
    if ts.sampler == "uniform":
        return UniformTimesteps(T, ts.t_start, end)
    if ts.sampler == "stratified":
        return StratifiedTimesteps(interval_clusters(config) if intervals is None else intervals)
    if ts.sampler == "soft":  # MEME's soft interval assignment: draw() gives (t, expert ids)
        pairs = interval_clusters(config) if intervals is None else intervals
        return SoftAssignment(pairs, ts.soft_p or "secondary", ts.soft_outside)
    return CurriculumTimesteps.from_config(config)


def check_clusters(config: Config) -> None:
    """Raise ValueError unless config.mtl's clustering fits a stratified sampler."""
    mtl, T = config.mtl, config.diffusion.num_timesteps
    if config.timesteps.t_start != 0 or config.timesteps.t_end not in (-1, T - 1):
        raise ValueError(
            "timesteps.sampler='stratified' covers all timesteps: timesteps.t_start and "
            "timesteps.t_end must keep their defaults (0 and -1)"
        )
    if not 1 <= mtl.num_clusters <= T:
        raise ValueError(f"mtl.num_clusters must be in 1..{T}, got {mtl.num_clusters}")
    if mtl.clustering == "affinity" and not (
        mtl.num_clusters <= mtl.affinity_bins <= T and T % mtl.affinity_bins == 0
    ):
        raise ValueError(
            f"mtl.affinity_bins must divide diffusion.num_timesteps={T} and be >= "
            f"mtl.num_clusters={mtl.num_clusters}, got {mtl.affinity_bins}"
        )


def interval_clusters(config: Config) -> list[Interval]:
    """The k = config.mtl.num_clusters intervals of a timestep or snr clustering (equal widths;
    interval clustering of the schedule's log-SNR)."""
    check_clusters(config)
    mtl, T = config.mtl, config.diffusion.num_timesteps
    if mtl.clustering == "timestep":
        return timestep_clusters(T, mtl.num_clusters)
    if mtl.clustering == "snr":
        return snr_clusters(make_schedule(config.diffusion.schedule, T), mtl.num_clusters)
    raise ValueError(
        "mtl.clustering='affinity' needs the task affinity of a training run: build the sampler "
        "with mtl_diffusion.clusters.timesteps_for(config) and pass it as Trainer(timesteps=...)"
        " (runs.train_run does this)"
    )


def engine_from_config(
    config: Config, model: nn.Module, k: int, sync: RankAverage | None = None
) -> MTLEngine:
    """The MTL engine config.mtl describes, over k clusters, with the weighted-MSE loss
    (`sync`: averaging over data-parallel ranks, see mtl.distributed)."""
    m = config.mtl
    options = {"c": m.cagrad_c} if m.method == "cagrad" else {}
    return MTLEngine(
        model,
        m.method,
        k,
        path=m.gradient_path,
        self_check=m.self_check,
        seed=config.seed,
        uw_lr=m.uw_lr,
        nash_every=m.nash_every,
        nash_max_norm=m.nash_max_norm,
        options=options,
        sync=sync,
    )


def dataset_from_config(config: Config, split: str = "train") -> torch.Tensor:
    """Training (or test) data as one tensor in [-1, 1] (an image folder: see decoded)."""
    d = config.data
    if d.name == "folder":
        if not d.path:
            raise ValueError(
                "data.name='folder' needs data.path, the image folder (e.g. the notebook parameter "
                'config_overrides="data.path=/data/ffhq"); or use data.name=digits'
            )
        store = artifacts_dir(config.profile) / "decoded"  # decoded once, then mapped
        return folder_split(
            d.path, split, d.image_size, d.channels, d.test_fraction, d.max_images, store
        )
    return load_dataset(d.name, split)


def sample_shape(config: Config, n: int) -> tuple[int, ...]:
    """Shape of `n` samples of the configured data."""
    if config.data.name.startswith("toy:"):
        return (n, 2)
    return (n, config.data.channels, config.data.image_size, config.data.image_size)
