"""Build the schedule, model and dataset a Config describes."""

from __future__ import annotations

import torch
from torch import nn

from mtl_diffusion.config import Config
from mtl_diffusion.data import load_dataset
from mtl_diffusion.diffusion import Schedule, make_schedule
from mtl_diffusion.models import build_model
from mtl_diffusion.routing import RoutingSpec
from mtl_diffusion.timesteps import UniformTimesteps


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
        )
    return build_model("mlp", dim=2, hidden=m.hidden_size, depth=m.depth, num_timesteps=steps)


def timesteps_from_config(config: Config):
    """The timestep sampler named by config.timesteps.sampler."""
    T, ts = config.diffusion.num_timesteps, config.timesteps
    end = T - 1 if ts.t_end == -1 else ts.t_end
    if ts.sampler == "uniform":
        return UniformTimesteps(T, ts.t_start, end)
    if ts.sampler == "stratified":
        from mtl_diffusion.timesteps import StratifiedTimesteps  # issue 4

        return StratifiedTimesteps.from_config(config)
    from mtl_diffusion.curriculum import CurriculumTimesteps  # issue 7

    return CurriculumTimesteps.from_config(config)


def dataset_from_config(config: Config, split: str = "train") -> torch.Tensor:
    """Training (or test) data as one tensor in [-1, 1]."""
    d = config.data
    if d.name == "folder":
        if not d.path:
            raise ValueError(
                "data.name='folder' needs data.path, the image folder (e.g. the notebook parameter "
                'config_overrides="data.path=/data/ffhq"); or use data.name=digits'
            )
        return load_dataset(
            "folder",
            split,
            path=d.path,
            image_size=d.image_size,
            channels=d.channels,
            test_fraction=d.test_fraction,
            max_images=d.max_images,
        )
    return load_dataset(d.name, split)


def sample_shape(config: Config, n: int) -> tuple[int, ...]:
    """Shape of `n` samples of the configured data."""
    if config.data.name.startswith("toy:"):
        return (n, 2)
    return (n, config.data.channels, config.data.image_size, config.data.image_size)
