"""Ray's in-trial calls: tune.report with the step counted, checkpoints, the trial's context."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetune import trial, tune
from kubetune.trial import tune_api
from kubetune.trial.checkpoints import staged_checkpoint
from kubetune.trial.settings import TrialSettings


@pytest.fixture
def make_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Install a default session (no endpoint, no signals) as a trial pod's would be."""
    sessions: list[trial.Session] = []

    def make(**overrides: object) -> trial.Session:
        fields = {"metrics_port": 0, "termination_log": tmp_path / "termination-log",
                  "checkpoint_dir": tmp_path / "ckpt", "linger_seconds": 0.0,
                  "experiment": "mnist", "trial": "mnist-3", **overrides}
        session = trial.Session(TrialSettings(**fields))  # type: ignore[arg-type]
        monkeypatch.setattr(trial, "_default_session", session)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def message(tmp_path: Path) -> dict:
    return trial.parse_termination_message((tmp_path / "termination-log").read_text()) or {}


def test_each_report_counts_one_training_iteration(make_session, tmp_path):
    session = make_session()
    tune.report({"accuracy": 0.5})
    tune.report(accuracy=0.6)
    tune.report({"accuracy": 0.7}, loss=0.1)
    assert session.last_step == 3
    reported = message(tmp_path)
    assert reported["step"] == 3
    assert reported["metrics"] == {"accuracy": 0.7, "loss": 0.1}


def test_an_explicit_step_wins_and_counting_goes_on_from_it(make_session):
    session = make_session()
    tune.report({"accuracy": 0.5}, step=5)
    assert session.last_step == 5
    tune.report({"accuracy": 0.6})
    assert session.last_step == 6
    tune.report({"accuracy": 0.7, "training_iteration": 10})
    assert session.last_step == 10
    assert "training_iteration" not in session._snapshot().latest


def test_a_step_below_the_last_is_refused_before_its_checkpoint_is_saved(make_session, tmp_path):
    make_session()
    tune.report({"accuracy": 0.5}, step=5)
    source = tmp_path / "src"
    source.mkdir()
    (source / "model.pt").write_text("weights")
    with pytest.raises(ValueError, match="steps must not decrease"):
        tune.report({"accuracy": 0.6}, step=3,
                    checkpoint=tune.Checkpoint.from_directory(source))
    assert not list((tmp_path / "ckpt").glob("step-*"))


def test_report_refuses_what_is_not_a_dict_or_a_checkpoint(make_session):
    make_session()
    with pytest.raises(TypeError, match="takes a dict of metrics"):
        tune.report(0.9)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Checkpoint\.from_directory"):
        tune.report({"accuracy": 0.9}, checkpoint="/tmp/x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a number"):
        tune.report({"accuracy": "high"})


def test_a_reported_checkpoint_is_the_one_the_trial_resumes_from(make_session, tmp_path):
    make_session()
    assert tune.get_checkpoint() is None
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "model.pt").write_text("epoch 1")
    (source / "sub" / "opt.pt").write_text("adam")
    tune.report({"accuracy": 0.5}, checkpoint=tune.Checkpoint.from_directory(source))
    (source / "model.pt").write_text("epoch 2")  # the reported copy must not change
    tune.report({"accuracy": 0.6}, checkpoint=tune.Checkpoint.from_directory(source))
    tune.report({"accuracy": 0.7})

    ckpt = tune.get_checkpoint()
    assert ckpt is not None and ckpt.step == 2
    assert Path(ckpt.path) == tmp_path / "ckpt" / "step-00000002"
    with ckpt.as_directory() as d:
        assert (Path(d) / "model.pt").read_text() == "epoch 2"
        assert (Path(d) / "sub" / "opt.pt").read_text() == "adam"
    out = ckpt.to_directory(tmp_path / "out")
    assert (Path(out) / "sub" / "opt.pt").read_text() == "adam"
    first = tmp_path / "ckpt" / "step-00000001" / "model.pt"
    assert first.read_text() == "epoch 1"


def test_a_resumed_trial_counts_on_from_its_checkpoint(make_session, tmp_path):
    root = tmp_path / "ckpt"
    root.mkdir()
    with staged_checkpoint(root, 4, keep=2) as staging:
        (staging / "model.pt").write_text("epoch 4")
    session = make_session()
    ckpt = tune.get_checkpoint()
    assert ckpt is not None and ckpt.step == 4
    tune.report({"accuracy": 0.8})
    assert session.last_step == 5


def test_a_pbt_clone_counts_on_from_its_donors_checkpoint(make_session, tmp_path):
    donor = tmp_path / "donor"
    donor.mkdir()
    with staged_checkpoint(donor, 7, keep=2) as staging:
        (staging / "model.pt").write_text("donor")
    session = make_session(start_checkpoint=donor / "step-00000007")
    tune.report({"accuracy": 0.8})
    assert session.last_step == 8


def test_checkpoint_from_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        tune.Checkpoint.from_directory(tmp_path / "nope")


def test_checkpoint_behaves_as_rays(tmp_path):
    """Ray's own Checkpoint (no Ray runtime needed) and ours give the same files back."""
    ray_train = pytest.importorskip("ray.train")
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("a")
    (source / "sub" / "b.txt").write_text("b")

    def files(d: str | os.PathLike[str]) -> dict[str, str]:
        return {str(p.relative_to(d)): p.read_text() for p in Path(d).rglob("*") if p.is_file()}

    ours, rays = tune.Checkpoint.from_directory(source), ray_train.Checkpoint.from_directory(
        str(source))
    assert files(ours.to_directory(tmp_path / "ours")) == files(
        rays.to_directory(str(tmp_path / "rays")))
    with ours.as_directory() as a, rays.as_directory() as b:
        assert files(a) == files(b) == {"a.txt": "a", "sub/b.txt": "b"}


def test_context_names_the_trial_and_its_directory(make_session, tmp_path):
    make_session()
    context = tune.get_context()
    assert context.get_trial_name() == "mnist-3"
    assert context.get_trial_id() == "mnist-3"
    assert context.get_experiment_name() == "mnist"
    assert context.get_trial_dir() == str(tmp_path / "ckpt")


def test_the_same_calls_work_in_a_plain_script(tmp_path):
    """A script a pod template runs: the default session from the pod's environment."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        from kubetune import tune
        cfg = tune.get_context()
        for acc in (0.2, 0.4, 0.9):
            tune.report({"accuracy": acc})
        print("trial", cfg.get_trial_name())
    """))
    env = {**os.environ, "KUBETUNE_METRICS_PORT": "0", "KUBETUNE_LINGER_SECONDS": "0",
           "KUBETUNE_TERMINATION_LOG": str(tmp_path / "termination-log"),
           "KUBETUNE_TRIAL": "x-0", "KUBETUNE_CONFIG": "{}"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "trial x-0" in done.stdout
    reported = message(tmp_path)
    assert reported["step"] == 3 and reported["metrics"] == {"accuracy": 0.9}
    assert reported["finished"] is True


_BLOCK_CLIENT = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"pydantic", "kubernetes", "yaml", "requests", "rich",
                                  "click", "pandas", "urllib3"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
import importlib.util
_find = importlib.util.find_spec
def find_spec(name, package=None):
    if name.split(".")[0] in {"pydantic", "kubernetes"}:
        return None
    return _find(name, package)
importlib.util.find_spec = find_spec
"""


def test_kubetune_tune_imports_in_a_trial_image_without_the_client_extra(tmp_path):
    code = _BLOCK_CLIENT + textwrap.dedent("""
        from kubetune import tune
        assert callable(tune.report) and callable(tune.get_checkpoint)
        assert tune.Checkpoint.from_directory(".").path == "."
        try:
            tune.Tuner
        except ModuleNotFoundError as e:
            print("refused:", e)
        assert "pydantic" not in sys.modules and "kubernetes" not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "refused: kubetune.tune.Tuner needs the client extra" in done.stdout


def test_tune_api_names_are_reachable_from_kubetune_tune():
    assert tune.report is tune_api.report
    assert tune.Checkpoint is tune_api.Checkpoint
    assert {"report", "get_checkpoint", "get_context", "Checkpoint"} <= set(tune.__all__)


def test_steps_are_counted_as_rays_training_iteration_including_after_a_restore(
        make_session, tmp_path):
    """Ray's own Trainable (no Ray runtime) counts one training_iteration per result and goes
    on from a restored checkpoint's; tune.report counts the same steps."""
    ray_tune = pytest.importorskip("ray.tune")

    class Counted(ray_tune.Trainable):  # type: ignore[misc]
        def setup(self, config: dict) -> None:
            self.seen = 0

        def step(self) -> dict:
            self.seen += 1
            return {"accuracy": self.seen / 10}

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            Path(checkpoint_dir, "seen").write_text(str(self.seen))

        def load_checkpoint(self, checkpoint_dir: str) -> None:
            self.seen = int(Path(checkpoint_dir, "seen").read_text())

    rays = Counted(config={})
    ray_steps = [rays.train()["training_iteration"] for _ in range(3)]
    saved = rays.save(str(tmp_path / "ray-ckpt"))
    restored = Counted(config={})
    restored.restore(saved)
    ray_after_restore = [restored.train()["training_iteration"] for _ in range(2)]

    first = make_session(checkpoint_dir=tmp_path / "ours")
    our_steps = []
    for i in range(3):
        source = tmp_path / f"src{i}"
        source.mkdir()
        tune.report({"accuracy": (i + 1) / 10}, checkpoint=tune.Checkpoint.from_directory(source))
        our_steps.append(first.last_step)
    first.close()
    second = make_session(checkpoint_dir=tmp_path / "ours")  # the trial's next attempt
    our_after_restore = []
    for _ in range(2):
        tune.report({"accuracy": 0.5})
        our_after_restore.append(second.last_step)
    assert our_steps == ray_steps == [1, 2, 3]
    assert our_after_restore == ray_after_restore == [4, 5]


def test_a_rays_own_checkpoint_is_reported_like_ours(make_session, tmp_path):
    ray_train = pytest.importorskip("ray.train")
    make_session()
    source = tmp_path / "src"
    source.mkdir()
    (source / "model.pt").write_text("ray's")
    tune.report({"accuracy": 0.5}, checkpoint=ray_train.Checkpoint.from_directory(str(source)))
    ckpt = tune.get_checkpoint()
    assert ckpt is not None and ckpt.step == 1
    assert (Path(ckpt.path) / "model.pt").read_text() == "ray's"
