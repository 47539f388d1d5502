"""ScoreCL: contrastive learning whose positive pairs are weighted by a score network.

A denoiser trained by denoising score matching on the digits scores how far augmentation moved
a view from the data (`score.py`); the difference of the two views' score values weights each
positive pair (`weights.py`) in SimCLR, SimSiam, VICReg or W-MSE (`losses.py`). Encoders are
trained on seeded augmentations (`augment.py`, `ssl.py`) and evaluated by k-NN (`knn.py`).
"""

from __future__ import annotations

from mtl_diffusion.scorecl.augment import AUGMENTATIONS, augment
from mtl_diffusion.scorecl.encoder import ConvEncoder, SSLModel
from mtl_diffusion.scorecl.knn import embed, knn_accuracy, knn_predict
from mtl_diffusion.scorecl.losses import LOSSES, simclr_loss, simsiam_loss, vicreg_loss, wmse_loss
from mtl_diffusion.scorecl.score import ScoreFunction, score_by_strength
from mtl_diffusion.scorecl.settings import SSLConfig, score_network_config, ssl_config
from mtl_diffusion.scorecl.ssl import (
    SSLResult,
    score_network,
    score_run,
    ssl_many,
    ssl_run,
    train_ssl,
)
from mtl_diffusion.scorecl.weights import WEIGHT_RULES, pair_weights

__all__ = [
    "AUGMENTATIONS",
    "LOSSES",
    "WEIGHT_RULES",
    "ConvEncoder",
    "SSLConfig",
    "SSLModel",
    "SSLResult",
    "ScoreFunction",
    "augment",
    "embed",
    "knn_accuracy",
    "knn_predict",
    "pair_weights",
    "score_by_strength",
    "score_network",
    "score_network_config",
    "score_run",
    "simclr_loss",
    "simsiam_loss",
    "ssl_config",
    "ssl_many",
    "ssl_run",
    "train_ssl",
    "vicreg_loss",
    "wmse_loss",
]
