"""The data-parallel mode: one trial trained by every process torchrun starts, as one group.

torchrun (`python -m torch.distributed.run`) reads the worker layout from the pod's
environment (`PET_NNODES`, `PET_NPROC_PER_NODE`, `PET_NODE_RANK`, `PET_MASTER_ADDR`,
`PET_MASTER_PORT`, which the operator sets on every pod of a multi-worker trial) and
starts this module's processes with `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`
and `MASTER_PORT`; so the command needs no flag of its own:

    python -m torch.distributed.run -m kubetune_trainer --dataset digits

Each process joins the process group (gloo on CPU, NCCL on CUDA), wraps the model
in DistributedDataParallel (gradients are averaged, so every rank holds the same
weights after each step) and trains on its own shard of each epoch
(`DistributedSampler`, reshuffled per epoch by (seed, epoch), the tail dropped so
the shards are disjoint and the same size: every rank takes the same number of steps).
Only global rank 0 talks to the operator: it opens the `kubetune.trial` session,
evaluates, reports, writes the termination message and the checkpoints. On start
rank 0 reads the latest checkpoint and broadcasts it to every rank, so a restarted
group resumes together from rank 0's state, wherever the other ranks run.

`--audit-dir DIR` makes every rank write `rank-<RANK>.json` at the end: a SHA-256 of
its final weights, per epoch the sample indices it trained on and (rank 0) the
accuracy it reported; a test reads these to show the shards were disjoint, the weights
identical and the operator's rung records rank 0's reports.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from kubetune.trial import Session
from kubetune_trainer.data import Splits
from kubetune_trainer.hyperparameters import Hyperparameters
from kubetune_trainer.mnist import (
    evaluate,
    load_state,
    restore,
    set_up,
    state_identity,
)
from kubetune_trainer.placement import Placement
from kubetune_trainer.reporting import EpochResult, first_epoch, report_epoch

logger = logging.getLogger("kubetune_trainer")

_STATE_FILE = "state.pt"


def join_group(placement: Placement, requested_device: str) -> torch.device:
    """Join the process group: NCCL on this process's GPU when it has one, else gloo."""
    use_cuda = requested_device == "cuda" or (
        requested_device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda, but no CUDA device is visible to this container")
        device = torch.device("cuda", placement.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                            rank=placement.rank, world_size=placement.world_size)
    logger.info("rank %d of %d joined the %s group on %s", placement.rank,
                placement.world_size, dist.get_backend(), device)
    return device


def leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value: Any, device: torch.device) -> Any:
    """Rank 0's `value` on every rank (pickled; tensors travel as CPU tensors)."""
    box = [value]
    dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    return box[0]


def _resume_state(session: Session | None, hp: Hyperparameters) -> tuple[int, dict[str, Any] | None]:
    """On rank 0: the first epoch to train and the checkpointed state, read from storage."""
    if session is None:
        return 1, None
    checkpoint = session.get_checkpoint()
    if checkpoint is None:
        return 1, None
    return first_epoch(checkpoint), load_state(checkpoint, hp, torch.device("cpu"))


def train_distributed(
    hp: Hyperparameters,
    splits: Splits,
    session: Session | None,
    placement: Placement,
    device: torch.device,
    *,
    amp: bool = False,
    audit_dir: Path | None = None,
) -> list[EpochResult]:
    """Train one trial as rank `placement.rank`; `session` is rank 0's, None on the others."""
    # Every rank builds the same initial model; DDP also broadcasts rank 0's weights.
    data, model, optimizer, scaler, amp = set_up(hp, splits, device, amp)

    start, state = broadcast(_resume_state(session, hp), device)
    if state is not None:
        restore(state, model, optimizer, scaler)
        if start > hp.epochs:  # a retry of a finished trial: report its result again
            result = EpochResult(start - 1, state["accuracy"], state["loss"])
            if session is not None:
                report_epoch(session, result, hp.epochs)
            _write_audit(audit_dir, placement, model, {}, [result])
            return [result]
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # The sampler only needs the dataset's length: the data itself stays on the device.
    indices = cast("Dataset[int]", range(len(data.train_y)))
    sampler: DistributedSampler[int] = DistributedSampler(indices, num_replicas=placement.world_size,
                                 rank=placement.rank, shuffle=True, seed=hp.seed, drop_last=True)
    if placement.is_leader:
        logger.info("training on %d ranks, %d examples per rank per epoch: %s",
                    placement.world_size, len(sampler), hp)
    seen: dict[int, list[int]] = {}
    results: list[EpochResult] = []
    for epoch in range(start, hp.epochs + 1):
        sampler.set_epoch(epoch)  # the shuffle depends on (seed, epoch) only, as on one worker
        seen[epoch] = list(sampler)
        _train_epoch(ddp, optimizer, scaler, data, seen[epoch], hp.batch_size, amp)
        if session is None:
            continue
        accuracy, loss = evaluate(model, data, hp.batch_size, amp)
        result = EpochResult(epoch, accuracy, loss)
        report_epoch(session, result, hp.epochs)
        with session.save_checkpoint(step=epoch) as path:
            torch.save({"epoch": epoch, "hyperparameters": state_identity(hp),
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(), "accuracy": accuracy, "loss": loss},
                       path / _STATE_FILE)
        results.append(result)
        _write_audit(audit_dir, placement, model, seen, results)  # rank 0's reports so far
    _write_audit(audit_dir, placement, model, seen, results)
    return results


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, data: Splits, shard: list[int],
                 batch_size: int, amp: bool) -> None:
    model.train()
    order = torch.tensor(shard, dtype=torch.int64, device=data.train_y.device)
    loss_fn = nn.CrossEntropyLoss()
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        with torch.autocast(device_type=data.train_x.device.type, enabled=amp):
            loss = loss_fn(model(data.train_x[batch]), data.train_y[batch])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # DDP averages the gradients across ranks here
        scaler.step(optimizer)
        scaler.update()


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers, in state_dict order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _write_audit(audit_dir: Path | None, placement: Placement, model: nn.Module,
                 seen: dict[int, list[int]], reported: list[EpochResult]) -> None:
    if audit_dir is None:
        return
    audit_dir.mkdir(parents=True, exist_ok=True)
    record = {"rank": placement.rank, "world_size": placement.world_size,
              "weights_sha256": weights_digest(model),
              "indices": {str(epoch): indices for epoch, indices in seen.items()},
              "reported": {str(r.epoch): r.accuracy for r in reported}}
    target = audit_dir / f"rank-{placement.rank}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(target)


def wait_for_leader() -> None:
    """On ranks other than 0 of a simulated trial: stay in the group until rank 0 is done."""
    dist.barrier()
