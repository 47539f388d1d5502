"""Run under torchrun by tests/test_distributed.py: trains a few steps of each MTL method with
the data-parallel Trainer and writes, from rank 0, the weights, losses and method weights, and
how far each rank's parameters and method state lie from rank 0's.

    torchrun --standalone --nproc_per_node 2 tests/distributed_worker.py OUT METHOD[@PREC]...
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist

from mtl_diffusion.config import load
from mtl_diffusion.mtl.distributed import RankAverage
from mtl_diffusion.train import Trainer

STEPS = 4
# k = 5 clusters over a global batch of 20 (10 per rank, every cluster on each); Nash re-solves
# at steps 1 and 3 and reuses alpha at 2 and 4.
SETTINGS = {
    "train.steps": STEPS,
    "train.batch_size": 20,
    "train.checkpoint_every": 2,
    "train.eval_every": 0,
    "timesteps.sampler": "stratified",
    "mtl.nash_every": 2,
}


def config(method: str, precision: str = "fp32", device: str = "cpu"):
    settings = {**SETTINGS, "mtl.method": method, "train.precision": precision}
    return load("smoke", {**settings, "train.device": device})


def spread(tensor: torch.Tensor) -> float:
    """max |tensor on any rank - tensor on rank 0|."""
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    if tensor.numel() == 0:
        return 0.0
    return max(float((g - gathered[0]).abs().max()) for g in gathered)


def method_state(trainer: Trainer) -> torch.Tensor:
    """The method's own state as one vector (UW's s, FAMO's xi, Nash's alpha), or empty."""
    method = trainer.engine.method
    for name in ("s", "xi", "alpha"):
        value = getattr(method, name, None)
        if isinstance(value, torch.Tensor):
            return value.detach().float().reshape(-1)
    return torch.zeros(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("methods", nargs="+", help="method or method@precision (bf16)")
    parser.add_argument("--device", default="cpu", help="cuda: nccl, one GPU per rank")
    args = parser.parse_args()
    if args.device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    rank = dist.get_rank()
    sync = RankAverage(bucket_bytes=64)  # 16 floats a bucket: 63 all-reduces for 1000 values
    device = (
        torch.device(args.device, torch.cuda.current_device()) if args.device == "cuda" else None
    )
    values = torch.arange(1000.0, device=device) * (rank + 1)
    expected = torch.arange(1000.0, device=device) * (dist.get_world_size() + 1) / 2
    results: dict = {"bucket_error": float((sync(values) - expected).abs().max())}
    for name in args.methods:
        method, _, precision = name.partition("@")
        cfg = config(method, precision or "fp32", args.device)
        trainer = Trainer(cfg)
        trainer.fit()
        flat = torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])
        state = method_state(trainer).to(flat.device)
        results[name] = {
            "model": {k: v.cpu().clone() for k, v in trainer.model.state_dict().items()},
            "losses": trainer.history.losses,
            "weights": trainer.history.method_weights,
            "param_spread": spread(flat),
            "state_spread": spread(state),
            "bytes_sent": getattr(trainer.engine.sync, "bytes_sent", None),
        }
    if dist.get_rank() == 0:
        torch.save(results, args.out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
