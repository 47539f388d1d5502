"""k-NN evaluation of a representation: train features are the bank, test digits the queries.

Cosine similarity on L2-normalised features; the k most similar bank entries vote for their
labels, each with weight exp(similarity / temperature) ("weighted", as in Wu et al. 2018) or
weight 1 ("majority"). Ties go to the smallest label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VOTES = ("weighted", "majority")


def knn_predict(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    k: int = 20,
    vote: str = "weighted",
    temperature: float = 0.07,
) -> Tensor:
    """Predicted labels (Q,) of `queries` (Q, D) from the bank (N, D) with labels (N,)."""
    if vote not in VOTES:
        raise ValueError(f"vote must be one of {VOTES}, got {vote!r}")
    if not 1 <= k <= len(bank):
        raise ValueError(f"k must lie in [1, {len(bank)}] (the bank size), got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if bank.dim() != 2 or queries.dim() != 2 or bank.shape[1] != queries.shape[1]:
        raise ValueError(
            f"bank and queries must be (N, D) and (Q, D), got {tuple(bank.shape)} and "
            f"{tuple(queries.shape)}"
        )
    sim = F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T
    top_sim, top_index = sim.topk(k, dim=1)
    votes = torch.exp(top_sim / temperature) if vote == "weighted" else torch.ones_like(top_sim)
    num_classes = int(bank_labels.max()) + 1
    scores = torch.zeros(len(queries), num_classes, dtype=votes.dtype)
    scores.scatter_add_(1, bank_labels[top_index], votes)
    return scores.argmax(dim=1)


@torch.no_grad()
def embed(encoder: nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    """Features of `images` from `encoder` in eval mode (its training mode is restored)."""
    was_training = encoder.training
    encoder.eval()
    features = torch.cat([encoder(chunk) for chunk in images.split(batch_size)])
    encoder.train(was_training)
    return features


def knn_accuracy(
    encoder: nn.Module,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    k: int = 20,
    vote: str = "weighted",
    temperature: float = 0.07,
) -> float:
    """Fraction of test images whose k-NN label (bank: train features) is right."""
    bank, queries = embed(encoder, train_images), embed(encoder, test_images)
    predicted = knn_predict(bank, train_labels, queries, k, vote, temperature)
    return float((predicted == test_labels).float().mean())
