"""Ray Tune's in-trial calls: `tune.report(...)`, `tune.get_checkpoint()`, `tune.get_context()`.

    from kubetune import tune

    def train_fn(config):
        start = 0
        if (ckpt := tune.get_checkpoint()) is not None:
            with ckpt.as_directory() as d:
                start = load(d)
        for epoch in range(start, 10):
            ...
            with tempfile.TemporaryDirectory() as d:
                save(d)
                tune.report({"accuracy": acc}, checkpoint=tune.Checkpoint.from_directory(d))

The same calls work in a function shipped by `kubetune.Tuner(train_fn, ...)` and in a
plain script a pod template runs. They drive the default `kubetune.trial` session:

- the step (the time attribute ASHA's milestones count) is counted as Ray's
  `training_iteration`: 1, 2, 3, ... one per report. `report(..., step=n)` or a
  `training_iteration` entry in the metrics still sets it; later reports count on from
  there. A trial that resumes from a checkpoint counts on from the checkpoint's step,
  as Ray restores `training_iteration` with a trial;
- `report(metrics, checkpoint=c)` copies `c`'s directory into the trial's
  KUBETUNE_CHECKPOINT_DIR as `step-<n>` (`kubetune.trial.checkpoints`), published
  atomically before the metrics, so a retried or PBT-cloned trial resumes from it;
- `get_checkpoint()` is the trial's latest complete checkpoint (its own, else the one a
  PBT donor gave it) as a `Checkpoint`, or None.

Imported inside trial pods: stdlib and `kubetune.trial` only.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kubetune import trial as _trial
from kubetune.trial.metrics import validate_report

#: The metric name Ray gives its automatic step; reported as the step, not as a metric.
TRAINING_ITERATION = "training_iteration"


class Checkpoint:
    """Ray's `Checkpoint`: a directory of files, saved by `report(..., checkpoint=...)`.

    `from_directory(path)` names a local directory (nothing is copied until it is
    reported); `as_directory()` yields a local directory to read; `to_directory(path)`
    copies the files out. `step` is the reported step it was saved at (None for one
    not yet reported).
    """

    def __init__(self, path: str | os.PathLike[str], *, step: int | None = None) -> None:
        self.path = str(Path(path))
        self.step = step

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """A checkpoint of the files in the local directory `path`."""
        directory = Path(path)
        if not directory.is_dir():
            raise ValueError(f"Checkpoint.from_directory({str(path)!r}): not a directory")
        return cls(directory)

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """Yield a local directory holding the checkpoint's files (read them, don't change them)."""
        yield self.path

    def to_directory(self, path: str | os.PathLike[str] | None = None) -> str:
        """Copy the checkpoint's files into `path` (a new temporary directory if None)."""
        target = Path(path) if path is not None else Path(
            tempfile.mkdtemp(prefix="kubetune-checkpoint-"))
        shutil.copytree(self.path, target, dirs_exist_ok=True)
        return str(target)

    def __repr__(self) -> str:
        step = "" if self.step is None else f", step={self.step}"
        return f"Checkpoint(path={self.path!r}{step})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and (self.path, self.step) == (other.path, other.step)

    def __hash__(self) -> int:
        return hash((self.path, self.step))


class CheckpointLike(Protocol):
    """What report(checkpoint=...) reads: a checkpoint that shows its files as a local
    directory (ours, or Ray's `ray.train.Checkpoint`)."""

    def as_directory(self) -> contextlib.AbstractContextManager[str]: ...


@dataclass(frozen=True)
class TrialContext:
    """Ray's `TuneContext`, from the trial pod's environment (`tune.get_context()`)."""

    trial_name: str
    experiment_name: str
    trial_dir: str

    def get_trial_name(self) -> str:
        """The TuneTrial's name, `<experiment>-<index>` ('' outside a trial pod)."""
        return self.trial_name

    def get_trial_id(self) -> str:
        """Unique within the namespace: the TuneTrial's name, as kubetune names trials."""
        return self.trial_name

    def get_experiment_name(self) -> str:
        """The TuneExperiment's name ('' outside a trial pod)."""
        return self.experiment_name

    def get_trial_dir(self) -> str:
        """The trial's own directory, kept across retries: KUBETUNE_CHECKPOINT_DIR (the
        working directory outside a trial pod). Not created here."""
        return self.trial_dir


def get_context() -> TrialContext:
    """This trial's names and directory."""
    settings = _trial.get_session().settings
    trial_dir = settings.checkpoint_dir if settings.checkpoint_dir is not None else Path.cwd()
    return TrialContext(settings.trial, settings.experiment, str(trial_dir))


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint to resume from: the trial's latest, else a PBT donor's, else None."""
    found = _trial.get_checkpoint()
    return None if found is None else Checkpoint(found.path, step=found.step)


def report(metrics: Mapping[str, Any] | None = None, *,
           checkpoint: Checkpoint | CheckpointLike | None = None,
           step: int | None = None, **kwargs: Any) -> None:
    """Report metrics, Ray's way: `report({"accuracy": acc})` or `report(accuracy=acc)`.

    The step is counted for you (Ray's `training_iteration`: 1 for the first report);
    `step=` or a `training_iteration` entry sets it. With `checkpoint=`, its files are
    saved as this step's checkpoint before the metrics are reported (a Ray
    `ray.train.Checkpoint` is taken too: its files are copied the same way).
    """
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(f"report() takes a dict of metrics, got {type(metrics).__name__}: "
                        "report({'accuracy': acc}) or report(accuracy=acc)")
    if checkpoint is not None and not callable(getattr(checkpoint, "as_directory", None)):
        raise TypeError(f"report(checkpoint=...) takes a tune.Checkpoint, got "
                        f"{type(checkpoint).__name__}: tune.Checkpoint.from_directory(path)")
    values = {**(metrics or {}), **kwargs}
    iteration = values.pop(TRAINING_ITERATION, None)
    session = _trial.get_session()
    if step is None and iteration is not None:
        if isinstance(iteration, bool) or not isinstance(iteration, numbers.Integral):
            raise TypeError(f"report({TRAINING_ITERATION}=...) is the step and must be an int, "
                            f"got {iteration!r}")
        step = int(iteration)
    if step is None:
        step = _next_step(session)
    validate_report(step, values, session.last_step)  # before a checkpoint is saved at it
    if checkpoint is not None:  # ours, or Ray's own: both show their files as a directory
        with session.save_checkpoint(step) as staging, checkpoint.as_directory() as files:
            shutil.copytree(files, staging, dirs_exist_ok=True)
    session.report(step=step, **values)


def _next_step(session: _trial.Session) -> int:
    """One past the last reported step; for a resumed trial's first report, one past the
    step of the checkpoint it resumes from; else 1."""
    last = session.last_step
    if last is not None:
        return last + 1
    try:
        resumed = session.get_checkpoint()
    except OSError:  # a checkpoint directory that cannot be made has nothing to resume
        return 1
    return 1 if resumed is None else resumed.step + 1


__all__ = ["Checkpoint", "CheckpointLike", "TrialContext", "get_checkpoint", "get_context", "report"]
