"""A trial's checkpoint directory: atomic `step-<n>` checkpoints and the rungs of earlier attempts.

Imported inside trial pods (stdlib and `kubetune.contract` only). The directory
(`KUBETUNE_CHECKPOINT_DIR`) outlives the pod, so a retried trial resumes from the
highest complete step here and reports the rungs its first attempt reached
rather than later, better values. A trial started from another trial's
checkpoint (KUBETUNE_START_CHECKPOINT, a PBT donor's) resumes from that one
until it has saved its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubetune.contract import Rung, compact_json, decode_float, encode_float

logger = logging.getLogger("kubetune.trial")

#: Rung records of earlier attempts, kept in the checkpoint directory so that a
#: retried trial reports the rungs its first attempt reached, not later values.
RUNGS_FILE = ".kubetune-rungs.json"
_CHECKPOINT_NAME = re.compile(r"step-(\d+)")


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint: the directory `save_checkpoint(step)` filled, and that step."""

    path: Path
    step: int


def latest_checkpoint(root: Path) -> Checkpoint | None:
    """The complete checkpoint with the highest step in `root`, or None."""
    latest: Checkpoint | None = None
    for child in root.iterdir():
        match = _CHECKPOINT_NAME.fullmatch(child.name)
        if match and child.is_dir():
            step = int(match.group(1))
            if latest is None or step > latest.step:
                latest = Checkpoint(child, step)
    return latest


def resume_checkpoint(root: Path, start_from: Path | None) -> Checkpoint | None:
    """Where a trial resumes: its own latest checkpoint, else the one it was started from.

    `start_from` (KUBETUNE_START_CHECKPOINT) is a `step-<n>` directory of another trial,
    a PBT donor's, read in place: a trial that cloned a donor starts from the donor's
    weights at that step, and from its own checkpoints once it has saved one.
    """
    own = latest_checkpoint(root)
    if own is not None or start_from is None:
        return own
    match = _CHECKPOINT_NAME.fullmatch(start_from.name)
    if match and start_from.is_dir():
        return Checkpoint(start_from, int(match.group(1)))
    logger.warning("the checkpoint to start from, %s, is not a complete checkpoint; "
                   "starting from scratch", start_from)
    return None


@contextlib.contextmanager
def staged_checkpoint(root: Path, step: int, keep: int,
                      kept_steps: Collection[int] = ()) -> Iterator[Path]:
    """Yield an empty staging directory; on success publish it as `step-<step>`.

    The `keep` highest steps are kept, and any at `kept_steps`
    (KUBETUNE_KEEP_CHECKPOINT_STEPS: the steps other trials may clone).
    """
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{step}-", dir=root))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, root / f"step-{step:08d}")
    _prune(root, keep, frozenset(kept_steps))


def _publish(staging: Path, target: Path) -> None:
    """Rename `staging` to `target` atomically, replacing an older checkpoint of that step."""
    if target.exists():
        old = target.with_name(f".replaced-{target.name}-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def _prune(root: Path, keep: int, kept_steps: frozenset[int] = frozenset()) -> None:
    """Keep the `keep` highest-step checkpoints and those at `kept_steps`; remove leftovers."""
    complete: list[tuple[int, Path]] = []
    for child in root.iterdir():
        match = _CHECKPOINT_NAME.fullmatch(child.name)
        if match and child.is_dir():
            complete.append((int(match.group(1)), child))
        elif child.name.startswith((".staging-", ".replaced-")):
            shutil.rmtree(child, ignore_errors=True)
    for step, path in sorted(complete, reverse=True)[keep:]:
        if step not in kept_steps:
            shutil.rmtree(path, ignore_errors=True)


# --- rung records across attempts ------------------------------------------------------


def save_rungs(directory: Path, rungs: Mapping[int, Rung]) -> None:
    """Replace `directory/RUNGS_FILE` atomically; a failure is logged, not raised."""
    path = directory / RUNGS_FILE
    tmp = path.with_name(f"{RUNGS_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(rungs_to_json(rungs), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("cannot save rung records to %s: %s", path, exc)


def load_rungs(directory: Path, milestones: Sequence[int]) -> dict[int, Rung]:
    """The rungs an earlier attempt saved in `directory`; {} if none or unreadable (logged)."""
    path = directory / RUNGS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        logger.warning("cannot read rung records from %s: %s", path, exc)
        return {}
    try:
        return rungs_from_json(text, milestones)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("ignoring unreadable rung records in %s: %s", path, exc)
        return {}


def rungs_to_json(rungs: Mapping[int, Rung]) -> str:
    return compact_json(
        {
            str(m): {
                "step": r.step,
                "metrics": {k: encode_float(v) for k, v in sorted(r.values.items())},
            }
            for m, r in sorted(rungs.items())
        }
    )


def rungs_from_json(text: str, milestones: Sequence[int]) -> dict[int, Rung]:
    """Rungs saved by an earlier attempt of the same trial, for the milestones still in use."""
    raw = json.loads(text)
    rungs: dict[int, Rung] = {}
    for key, entry in raw.items():
        milestone = int(key)
        if milestone in milestones:
            values = {k: decode_float(v) for k, v in entry["metrics"].items()}
            rungs[milestone] = Rung(milestone, int(entry["step"]), values)
    return rungs
