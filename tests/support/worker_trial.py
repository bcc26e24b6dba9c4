"""One worker of a multi-worker trial: a torch.distributed (gloo) group built from the PET_* env.

Every pod joins one process group (rank PET_NODE_RANK of PET_NNODES at
PET_MASTER_ADDR:PET_MASTER_PORT, as torchrun's static rendezvous would), and every step
is an all_reduce of each rank's contribution, so a worker that dies breaks the step of
every other one. Rank 0 alone reports the scripted curve (`quality * (1 - 0.5**step)`),
checkpoints each step, and starts from its checkpoint (the step is broadcast to every
rank); it reports `start_step` (the first step of this attempt), `workers` (the group's
size) and `group_sum` (the all_reduce's result, world*(world+1)/2 when every rank took part).

Config keys: quality, steps, sleep (seconds per step).
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from kubetune import trial


def curve(quality: float, step: int) -> float:
    return quality * (1.0 - 0.5**step)


def main() -> None:
    rank = int(os.environ["PET_NODE_RANK"])
    world = int(os.environ["PET_NNODES"])
    address = f"tcp://{os.environ['PET_MASTER_ADDR']}:{os.environ['PET_MASTER_PORT']}"
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    print(f"rank {rank} of {world} joined at {address}", flush=True)
    # Ranks above 0 never touch kubetune.trial: only rank 0 serves metrics and reports.
    cfg = json.loads(os.environ.get("KUBETUNE_CONFIG") or "{}")
    steps, sleep, quality = int(cfg.get("steps", 9)), float(cfg.get("sleep", 0.5)), float(cfg["quality"])
    start = torch.tensor([1])
    if rank == 0:
        checkpoint = trial.get_checkpoint()
        start[0] = checkpoint.step + 1 if checkpoint else 1
    dist.broadcast(start, src=0)
    first = int(start.item())
    print(f"rank {rank} starts at step {first}", flush=True)
    for step in range(first, steps + 1):
        time.sleep(sleep)
        total = torch.tensor([float(rank + 1)])
        dist.all_reduce(total)
        if rank == 0:
            trial.report(step=step, accuracy=curve(quality, step), start_step=float(first),
                         workers=float(world), group_sum=float(total.item()))
            with trial.save_checkpoint(step=step):
                pass
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
