"""Contrastive training with optional ScoreCL pair weights, cached and run in parallel.

    score = score_network(cfg)                 # the shared score network (cached train_run)
    result = ssl_run(cfg)                      # one cached run: losses, encoder, k-NN accuracy
    results = ssl_many([cfg_a, cfg_b, ...])    # in worker processes of one thread each

One step: draw a batch of train digits, augment it twice, (ScoreCL) weight each pair by the
difference of its views' score values, and take an AdamW step on the method's loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from mtl_diffusion.builders import schedule_from_config
from mtl_diffusion.cache import cache_path, load_or_compute
from mtl_diffusion.data import load_digits_labels, load_digits_split
from mtl_diffusion.progress import progress
from mtl_diffusion.repro import seed_everything
from mtl_diffusion.runs import RunResult, train_run
from mtl_diffusion.scorecl.augment import augment
from mtl_diffusion.scorecl.encoder import ConvEncoder, SSLModel
from mtl_diffusion.scorecl.knn import knn_accuracy
from mtl_diffusion.scorecl.losses import simclr_loss, simsiam_loss, vicreg_loss, wmse_loss
from mtl_diffusion.scorecl.score import ScoreFunction
from mtl_diffusion.scorecl.settings import SSLConfig, score_network_config
from mtl_diffusion.scorecl.weights import pair_weights
from mtl_diffusion.workers import default_jobs, worker_pool

SCORE_RUN = "scorecl_score"


def score_run(cfg: SSLConfig) -> RunResult:
    """The trained score network's run (cached; shared by every SSL run of the profile)."""
    return train_run(score_network_config(cfg), SCORE_RUN, evaluate=False)


def score_network(cfg: SSLConfig) -> ScoreFunction:
    """s_theta(., cfg.score_t) of the cached score network's EMA weights."""
    score_cfg = score_network_config(cfg)
    return ScoreFunction(score_run(cfg).ema_model(), schedule_from_config(score_cfg), cfg.score_t)


@dataclass
class SSLResult:
    """What one contrastive run leaves: per-step losses and weight spread, encoder, k-NN."""

    config: SSLConfig
    losses: list[float]
    weight_std: list[float]  # std of the pair weights per step (0 for the plain loss)
    encoder_state: dict[str, Tensor]
    knn_accuracy: float
    seconds: float  # wall-clock training time (grows with the machine's load)
    cpu_seconds: float  # CPU time of the training process

    def encoder(self) -> ConvEncoder:
        """The trained encoder, rebuilt and in eval mode."""
        encoder = ConvEncoder(1, self.config.feature_dim)
        encoder.load_state_dict(self.encoder_state)
        return encoder.eval()


def ssl_loss(cfg: SSLConfig, model: SSLModel, v1: Tensor, v2: Tensor, w: Tensor | None) -> Tensor:
    """The configured method's loss on the two views' outputs, pairs weighted by `w`."""
    z, p = model(torch.cat([v1, v2]))
    z1, z2 = z.chunk(2)
    if cfg.method == "simclr":
        return simclr_loss(z1, z2, w, temperature=cfg.temperature)
    if cfg.method == "simsiam":
        p1, p2 = p.chunk(2)
        return simsiam_loss(p1, p2, z1, z2, w)
    if cfg.method == "vicreg":
        return vicreg_loss(z1, z2, w)
    return wmse_loss(z1, z2, w)


def train_ssl(cfg: SSLConfig, score: ScoreFunction | None = None) -> SSLResult:
    """Train an encoder with cfg.method; ScoreCL weights need `score` unless the rule is none."""
    if cfg.weight_rule != "none" and score is None:
        raise ValueError(f"weight_rule={cfg.weight_rule!r} needs a score function")
    seed_everything(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    data = load_digits_split("train")
    model = SSLModel(1, cfg.feature_dim, cfg.hidden_dim, cfg.proj_dim, cfg.method == "simsiam")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    losses, weight_std = [], []
    start, cpu_start = time.perf_counter(), time.process_time()
    model.train()
    for _ in progress(range(cfg.steps), desc=f"{cfg.method}/{cfg.weight_rule}"):
        x = data[torch.randint(len(data), (cfg.batch_size,), generator=generator)]
        v1, v2 = augment(x, cfg.strengths, generator), augment(x, cfg.strengths, generator)
        w = None
        if cfg.weight_rule != "none":
            value1, value2 = score.value(torch.cat([v1, v2])).chunk(2)
            w = pair_weights(value1, value2, cfg.weight_rule, cfg.weight_floor)
        loss = ssl_loss(cfg, model, v1, v2, w)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{cfg.method} loss is {loss.item()} at step {len(losses)}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        weight_std.append(0.0 if w is None else float(w.std()))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    accuracy = knn_accuracy(
        model.encoder,
        data,
        load_digits_labels("train"),
        load_digits_split("test"),
        load_digits_labels("test"),
        cfg.knn_k,
        cfg.knn_vote,
        cfg.knn_temperature,
    )
    state = {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}
    return SSLResult(cfg, losses, weight_std, state, accuracy, seconds, cpu_seconds)


def _cached(cfg: SSLConfig, compute: Callable[[], SSLResult]) -> SSLResult:
    """load_or_compute keyed by the settings, the score network's config and the code."""
    name, extra = f"scorecl_{cfg.method}", cfg.to_dict()
    return load_or_compute(score_network_config(cfg), compute, name=name, extra=extra)


def _is_cached(cfg: SSLConfig) -> bool:
    return cache_path(score_network_config(cfg), f"scorecl_{cfg.method}", cfg.to_dict()).exists()


def ssl_run(cfg: SSLConfig, score: ScoreFunction | None = None) -> SSLResult:
    """train_ssl once per settings (cached); the score network is loaded if needed and absent."""
    if score is None and cfg.weight_rule != "none":
        score = score_network(cfg)
    return _cached(cfg, lambda: train_ssl(cfg, score))


def ssl_many(configs: list[SSLConfig], jobs: int | None = None) -> list[SSLResult]:
    """ssl_run for every settings, `jobs` at a time in fresh one-thread processes (spawn).

    This process loads (or trains) each score network once and hands it to the workers, and it
    alone reads and writes the cache, so every run sees the same score network and code
    version. Cached runs start no worker. Results come back in the order of `configs`.
    """
    jobs = default_jobs() if jobs is None else jobs
    scores: dict[str, ScoreFunction] = {}
    for cfg in configs:
        key = score_network_config(cfg).digest()
        if cfg.weight_rule != "none" and key not in scores:
            scores[key] = score_network(cfg)

    def score_for(cfg: SSLConfig) -> ScoreFunction | None:
        return scores[score_network_config(cfg).digest()] if cfg.weight_rule != "none" else None

    pending = [i for i, cfg in enumerate(configs) if not _is_cached(cfg)]
    pool = None
    futures: dict[int, Future[SSLResult]] = {}
    if jobs > 1 and len(pending) > 1:
        pool = worker_pool(jobs)
        futures = {i: pool.submit(train_ssl, configs[i], score_for(configs[i])) for i in pending}
    try:
        results = []
        for i, cfg in progress(enumerate(configs), total=len(configs), desc="SSL runs"):
            compute = futures[i].result if i in futures else partial(train_ssl, cfg, score_for(cfg))
            results.append(_cached(cfg, compute))
        return results
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
