"""`kubetune dev`: the example experiment end to end, with the real trainer on digits.

The session's `operator` fixture already reconciles every namespace, so the
journey runs with --no-operator; starting and stopping the operator process
that `kubetune dev` launches is checked on its own, in a namespace with no
experiments, so that two operators never reconcile the same experiment.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import requests
import yaml
from click.testing import CliRunner

from kubetune.client.cli import main
from kubetune.client.devjourney import DEFAULT_CHECKPOINT_ROOT, launch_operator, load_example
from kubetune.client.experiments import ExperimentClient
from tests.e2e.test_cli import png_size

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mnist-asha.yaml"


def small_example(path: Path) -> Path:
    """The shipped example, shrunk: 2 trials of 2 epochs, both at once."""
    body: dict[str, Any] = load_example(EXAMPLE)
    spec = body["spec"]
    spec["numSamples"] = 2
    spec["maxConcurrentTrials"] = 2
    spec["searchSpace"]["epochs"] = {"value": 2}
    spec["scheduler"]["maxT"] = 2
    path.write_text(yaml.safe_dump(body))
    return path


def test_the_shipped_examples_are_valid_experiments():
    from kubetune.api import validate_experiment_spec

    for path in sorted((ROOT / "examples").glob("*.yaml")):
        body = load_example(path)
        spec = validate_experiment_spec(body["spec"])
        container = spec.trial_template.spec.containers[0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1", path
        # One process per pod runs the trainer; a trial of several workers starts it with torchrun.
        trainer = ["python", "-m", "kubetune_trainer"]
        torchrun = ["python", "-m", "torch.distributed.run", "-m", "kubetune_trainer"]
        assert container["command"] == (torchrun if spec.workers else trainer), path
        assert spec.scheduler.type == "asha", path


def test_dev_runs_the_example_to_the_end_and_prints_the_best_config_and_plot(
        cluster, namespace, operator, tmp_path):
    example = small_example(tmp_path / "small.yaml")
    plot = tmp_path / "curves.png"
    started = time.monotonic()
    try:
        result = CliRunner().invoke(main, [
            "dev", str(example), "-n", namespace, "--no-operator", "--cluster-dir",
            str(cluster.state_dir), "-o", str(plot), "--timeout", "240"], catch_exceptions=False)
    finally:
        shutil.rmtree(Path(DEFAULT_CHECKPOINT_ROOT) / namespace, ignore_errors=True)
    seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"using the local cluster in {cluster.state_dir}" in out
    assert f"applied TuneExperiment {namespace}/mnist-asha" in out
    assert "Succeeded: 2/2 trials done" in out  # the watch view's last line

    experiment = ExperimentClient(cluster.kubeconfig, namespace=namespace).get_experiment(
        "mnist-asha")
    best = experiment["status"]["bestTrial"]
    assert f"best configuration ({best['name']}, accuracy=" in out
    assert f'"lr": {best["config"]["lr"]}' in out
    assert best["metric"] > 0.2, "two epochs on digits should beat chance (0.1)"
    assert f"learning curves: {plot}" in out
    assert png_size(plot) == (1200, 700)
    assert "kubetune cluster down" in out and cluster.is_up()
    print(f"\nkubetune dev (2 digits trials, --no-operator) took {seconds:.0f}s")


def test_the_operator_dev_starts_answers_health_checks_and_stops(cluster, crds, tmp_path):
    log = tmp_path / "operator.log"
    handle = launch_operator(cluster.kubeconfig, cluster.prometheus_url, log,
                             namespaces=("kubetune-no-experiments",))
    try:
        assert handle.running()
        assert requests.get(f"http://127.0.0.1:{handle.health_port}/healthz", timeout=5).ok
        metrics = requests.get(f"http://127.0.0.1:{handle.metrics_port}/metrics", timeout=5).text
        assert "kubetune_reconcile_ticks_total" in metrics
    finally:
        started = time.monotonic()
        handle.stop(grace=5)
    assert not handle.running()
    assert time.monotonic() - started < 20
    assert "kubetune operator" in log.read_text()
