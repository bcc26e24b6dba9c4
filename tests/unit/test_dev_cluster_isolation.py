"""What the local runner gives a trial process: the pod's env and a few variables an image
would have set, a directory of its own outside the cluster's state dir, and Prometheus
target labels from the pod's metadata that no pod label overrides."""

from __future__ import annotations

import sys
from pathlib import Path

from kubetune import contract
from kubetune.devcluster import sandbox
from kubetune.devcluster.podstatus import target_labels

CALLER = {"PATH": "/usr/local/bin:/usr/bin", "HOME": "/home/dev", "LANG": "C.UTF-8",
          "PYTHONPATH": "/src", "KUBECONFIG": "/home/dev/.kube/config",
          "AWS_SECRET_ACCESS_KEY": "s3cr3t", "GITHUB_TOKEN": "ghp_x", "SSH_AUTH_SOCK": "/tmp/a"}


def test_the_process_gets_the_pods_env_and_nothing_else_of_the_callers(tmp_path: Path) -> None:
    env = sandbox.process_env({"LR": "0.1", "PATH": "/pod/bin"}, tmp_path / "home", CALLER)
    assert env == {"PATH": "/pod/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
                   "PYTHONPATH": "/src", "LR": "0.1"}


def test_path_finds_this_python_first_so_python_runs_kubetune(tmp_path: Path) -> None:
    env = sandbox.process_env({}, tmp_path, CALLER)
    first, *rest = env["PATH"].split(":")
    assert first == str(Path(sys.executable).parent) and rest == ["/usr/local/bin", "/usr/bin"]
    assert "KUBECONFIG" not in env and env["HOME"] == str(tmp_path)


def test_pods_live_next_to_the_state_dir_never_inside_it(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    root = sandbox.pods_root(state)
    assert root == tmp_path / "cluster-pods"
    assert not sandbox.inside(root, state) and not sandbox.inside(state, root)


def test_a_working_dir_reaching_the_state_dir_is_not_honoured(tmp_path: Path) -> None:
    state, own, elsewhere = tmp_path / "cluster", tmp_path / "pod", tmp_path / "data"
    for d in (state / "pki", own, elsewhere):
        d.mkdir(parents=True)
    (tmp_path / "link").symlink_to(state / "pki")
    assert sandbox.working_dir(str(elsewhere), own, state) == elsewhere
    for reaching in (state, state / "pki", tmp_path, Path("/"), tmp_path / "link"):
        assert sandbox.working_dir(str(reaching), own, state) == own, reaching
    assert sandbox.working_dir(str(tmp_path / "absent"), own, state) == own
    assert sandbox.working_dir(None, own, state) == own


def _pod(labels: dict[str, str]) -> dict:
    return {"metadata": {"namespace": "team-a", "name": "exp-3-1", "labels": labels}}


def test_target_labels_come_from_the_pods_metadata_as_the_charts_relabelling_sets_them() -> None:
    labels = {contract.EXPERIMENT_LABEL: "exp", contract.TRIAL_LABEL: "exp-3",
              contract.ATTEMPT_LABEL: "1", "app": "trainer"}
    assert target_labels(_pod(labels)) == {"namespace": "team-a", "pod": "exp-3-1",
                                           "experiment": "exp", "trial": "exp-3", "attempt": "1"}


def test_a_pod_label_cannot_override_namespace_experiment_trial_or_pod() -> None:
    spoofing = {"namespace": "victims", "experiment": "their-exp", "trial": "their-exp-0",
                "pod": "theirs", "attempt": "9", "__address__": "10.0.0.1:22",
                contract.EXPERIMENT_LABEL: "exp", contract.TRIAL_LABEL: "exp-3"}
    assert target_labels(_pod(spoofing)) == {"namespace": "team-a", "pod": "exp-3-1",
                                             "experiment": "exp", "trial": "exp-3"}
    assert target_labels(_pod({"experiment": "their-exp"})) == {"namespace": "team-a",
                                                                "pod": "exp-3-1"}
