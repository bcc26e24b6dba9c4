"""`python -m kubetune_trainer`: train one trial and report it through `kubetune.trial`.

Hyperparameters come from the trial config (KUBETUNE_CONFIG); the flags below
are their defaults for keys the search space leaves out, and for local runs.
Started by torchrun (`python -m torch.distributed.run -m kubetune_trainer ...`),
every process it starts trains the trial as one data-parallel group (`ddp`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kubetune import trial
from kubetune_trainer.hyperparameters import OPTIMIZERS, resolve
from kubetune_trainer.placement import Placement
from kubetune_trainer.reporting import EpochResult

logger = logging.getLogger("kubetune_trainer")

_HYPERPARAMETER_FLAGS = (
    "lr",
    "batch_size",
    "hidden_size",
    "layers",
    "dropout",
    "optimizer",
    "momentum",
    "weight_decay",
    "epochs",
    "seed",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kubetune_trainer",
        description="Train one kubetune trial; the trial config overrides the flags.",
    )
    parser.add_argument("--dataset", choices=("mnist", "digits", "simulated"), default="mnist")
    parser.add_argument("--data-dir", type=Path, default=Path("/data"), help="MNIST root")
    parser.add_argument(
        "--download", action="store_true", help="let torchvision download MNIST (needs internet)"
    )
    parser.add_argument("--val-fraction", type=float, default=0.1, help="held-out validation")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    parser.add_argument(
        "--seconds-per-step", type=float, default=0.1, help="simulated: time per epoch"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--audit-dir", type=Path, help="under torchrun: each rank writes rank-<RANK>.json here "
        "(its final weights' SHA-256 and the sample indices it trained on)"
    )
    group = parser.add_argument_group("hyperparameters (defaults; the trial config wins)")
    group.add_argument("--lr", type=float)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--hidden-size", type=int)
    group.add_argument("--layers", type=int)
    group.add_argument("--dropout", type=float)
    group.add_argument("--optimizer", choices=OPTIMIZERS)
    group.add_argument("--momentum", type=float)
    group.add_argument("--weight-decay", type=float)
    group.add_argument("--epochs", type=int, help="the ASHA time attribute (step = epoch)")
    group.add_argument("--seed", type=int)
    return parser


def run(args: argparse.Namespace, session: trial.Session) -> list[EpochResult]:
    """Train (or simulate) one trial reporting to `session`; return the epochs run."""
    config = session.config()
    hp = resolve(config, {name: getattr(args, name) for name in _HYPERPARAMETER_FLAGS})
    if args.dataset == "simulated":
        from kubetune_trainer.simulated import run_simulated

        return run_simulated(hp, session, seconds_per_step=args.seconds_per_step, config=config)
    from kubetune_trainer.data import load
    from kubetune_trainer.mnist import pick_device, train

    splits = load(
        args.dataset, data_dir=args.data_dir, download=args.download, val_fraction=args.val_fraction
    )
    return train(hp, splits, session, device=pick_device(args.device), amp=args.amp)


def run_distributed(args: argparse.Namespace, placement: Placement) -> list[EpochResult]:
    """Train one trial as one rank of torchrun's group; only rank 0 opens the trial session."""
    from kubetune_trainer import ddp

    session = trial.get_session() if placement.is_leader else None
    # Every pod of a trial gets the same config; rank 0's is the one the group trains with.
    config = session.config() if session is not None else {}
    device = ddp.join_group(placement, args.device)
    try:
        config = ddp.broadcast(config, device)
        hp = resolve(config, {name: getattr(args, name) for name in _HYPERPARAMETER_FLAGS})
        if args.dataset == "simulated":
            results = []
            if session is not None:
                from kubetune_trainer.simulated import run_simulated

                results = run_simulated(
                    hp, session, seconds_per_step=args.seconds_per_step, config=config
                )
            ddp.wait_for_leader()
            return results
        from kubetune_trainer.data import load

        splits = load(
            args.dataset, data_dir=args.data_dir, download=args.download,
            val_fraction=args.val_fraction,
        )
        return ddp.train_distributed(
            hp, splits, session, placement, device, amp=args.amp, audit_dir=args.audit_dir
        )
    finally:
        ddp.leave_group()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    placement = Placement.from_env()
    if placement is not None:
        results = run_distributed(args, placement)
        if placement.is_leader:
            _log_done(results)
            trial.get_session().finish()
        return 0
    session = trial.get_session()
    results = run(args, session)
    _log_done(results)
    session.finish()
    return 0


def _log_done(results: list[EpochResult]) -> None:
    if results:
        last = results[-1]
        logger.info("done: epoch %d accuracy=%.4f loss=%.4f", last.epoch, last.accuracy, last.loss)


if __name__ == "__main__":
    sys.exit(main())
