"""The in-trial side of a PBT exploit: starting from a donor's checkpoint, keeping clonable ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.trial import Session, TrialSettings
from kubetune.trial.checkpoints import resume_checkpoint


def _session(tmp_path: Path, own: Path, **settings: object) -> Session:
    return Session(TrialSettings(metrics_port=0, termination_log=tmp_path / "log",
                                 linger_seconds=0.0, checkpoint_dir=own, **settings))  # type: ignore[arg-type]


def _save(session: Session, step: int, weights: str) -> None:
    with session.save_checkpoint(step) as path:
        (path / "weights").write_text(weights)


def test_a_clone_starts_from_the_donors_checkpoint_then_from_its_own(tmp_path: Path) -> None:
    donor = _session(tmp_path, tmp_path / "donor")
    for step in (2, 4):
        _save(donor, step, f"donor@{step}")
    start = tmp_path / "donor" / "step-00000004"
    clone = _session(tmp_path, tmp_path / "clone", start_checkpoint=start)
    checkpoint = clone.get_checkpoint()
    assert checkpoint is not None and checkpoint.step == 4
    assert (checkpoint.path / "weights").read_text() == "donor@4"
    _save(clone, 5, "clone@5")
    checkpoint = clone.get_checkpoint()
    assert checkpoint is not None and checkpoint.step == 5
    assert checkpoint.path.parent == tmp_path / "clone"
    assert (start / "weights").read_text() == "donor@4"  # read in place, never written


def test_a_missing_start_checkpoint_starts_from_scratch(tmp_path: Path) -> None:
    assert resume_checkpoint(tmp_path, tmp_path / "gone" / "step-00000004") is None
    (tmp_path / "not-a-checkpoint").mkdir()
    assert resume_checkpoint(tmp_path, tmp_path / "not-a-checkpoint") is None


def test_checkpoints_at_kept_steps_survive_pruning(tmp_path: Path) -> None:
    session = _session(tmp_path, tmp_path / "own", keep_checkpoint_steps=(2, 4))
    for step in range(1, 8):
        _save(session, step, str(step))
    names = sorted(p.name for p in (tmp_path / "own").iterdir())
    assert names == ["step-00000002", "step-00000004", "step-00000006", "step-00000007"]


@pytest.mark.parametrize("text", ["2,4", " 2, 4 ", "2,4,"])
def test_kept_steps_and_start_checkpoint_come_from_the_environment(text: str) -> None:
    settings = TrialSettings.from_env({"KUBETUNE_KEEP_CHECKPOINT_STEPS": text,
                                       "KUBETUNE_START_CHECKPOINT": "/ckpt/t-3/step-00000004"})
    assert settings.keep_checkpoint_steps == (2, 4)
    assert settings.start_checkpoint == Path("/ckpt/t-3/step-00000004")


def test_bad_kept_steps_name_the_variable() -> None:
    with pytest.raises(ValueError, match="KUBETUNE_KEEP_CHECKPOINT_STEPS must be comma-separated"):
        TrialSettings.from_env({"KUBETUNE_KEEP_CHECKPOINT_STEPS": "two"})
