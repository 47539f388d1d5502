"""Timestep clusters of a Config, affinity clustering included (it trains a vanilla run and
estimates the task affinity there, cached): the sampler a clustered run trains with."""

from __future__ import annotations

from mtl_diffusion.affinity import task_affinity
from mtl_diffusion.builders import check_clusters, interval_clusters, timesteps_from_config
from mtl_diffusion.clustering import Interval, affinity_clusters
from mtl_diffusion.config import Config


def clusters_from_config(config: Config) -> list[Interval]:
    """The k = config.mtl.num_clusters timestep intervals of config.mtl.clustering.

    timestep: equal widths; snr: clustering of the schedule's log-SNR; affinity: clustering of
    the task-affinity matrix between config.mtl.affinity_bins bins of equal width (estimated,
    and cached, by mtl_diffusion.affinity.task_affinity).
    """
    if config.mtl.clustering != "affinity":
        return interval_clusters(config)
    check_clusters(config)
    bins, T = config.mtl.affinity_bins, config.diffusion.num_timesteps
    return affinity_clusters(
        task_affinity(config, bins), config.mtl.num_clusters, bin_width=T // bins
    )


def timesteps_for(config: Config):
    """The timestep sampler of `config`, its clusters resolved (affinity ones too)."""
    if config.timesteps.sampler == "stratified":
        return timesteps_from_config(config, clusters_from_config(config))
    return timesteps_from_config(config)
