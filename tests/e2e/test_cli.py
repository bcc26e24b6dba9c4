"""The `kubetune` CLI against the real control plane, reading a finished experiment."""

from __future__ import annotations

import shutil
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from kubetune.client.cli import main
from kubetune.devcluster.processes import free_port
from tests.e2e.conftest import FLAKY_INDEX, QUALITIES
from tests.support.scripted_trial import curve

PLOT_COPY = Path("/tmp/kubetune-e2e-plot.png")  # kept for a person to look at


def run(cluster: Any, namespace: str, *args: str) -> Result:
    return CliRunner().invoke(
        main, [*args, "-n", namespace, "--kubeconfig", str(cluster.kubeconfig)],
        catch_exceptions=False)


def best_name() -> str:
    return f"cli-{max(range(len(QUALITIES)), key=lambda i: QUALITIES[i])}"


def test_status_shows_phase_counts_best_trial_and_rungs(cluster, module_namespace, finished):
    result = run(cluster, module_namespace, "status", "cli")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"{module_namespace}/cli" in out and "Succeeded" in out
    status = finished["status"]
    assert status["bestTrial"]["name"] == best_name()
    assert best_name() in out
    assert f"{status['bestTrial']['metric']:.4g}" in out
    assert f"6/6 trials done: {status['trials']['succeeded']} succeeded, " \
           f"{status['trials']['pruned']} pruned" in out
    assert "milestone" in out and "cutoff (accuracy)" in out
    assert "MetricsAvailable" in out and "Complete" in out


def test_trials_sorted_by_the_objective_list_the_best_first(cluster, module_namespace, finished):
    result = run(cluster, module_namespace, "trials", "cli", "--sort", "accuracy")
    assert result.exit_code == 0, result.output
    order = [line.split("│")[1].strip().rstrip(" *") for line in result.output.splitlines()
             if line.startswith("│ cli-")]
    assert sorted(order) == sorted(f"cli-{i}" for i in range(6))
    accuracy = {t: finished_metric(cluster, module_namespace, t) for t in order}
    assert [accuracy[t] for t in order] == sorted(accuracy.values(), reverse=True)
    assert order[0] == best_name()
    assert f"{best_name()} *" in result.output  # the best trial is marked

    ascending = run(cluster, module_namespace, "trials", "cli", "--sort", "accuracy", "--reverse")
    rows = [line.split("│")[1].strip().rstrip(" *") for line in ascending.output.splitlines()
            if line.startswith("│ cli-")]
    assert rows == order[::-1]


def finished_metric(cluster: Any, namespace: str, trial: str) -> float:
    from kubetune.client.experiments import ExperimentClient

    status = ExperimentClient(cluster.kubeconfig, namespace=namespace).get_trial(trial)["status"]
    return float(status["metrics"]["accuracy"])


def test_trials_filtered_by_state_show_only_that_state(cluster, module_namespace, finished):
    pruned = finished["status"]["trials"]["pruned"]
    assert pruned > 0, "ASHA should prune some of these curves"
    result = run(cluster, module_namespace, "trials", "cli", "--state", "Pruned")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│ cli-")]
    assert len(rows) == pruned
    assert all("Pruned" in row and "< cutoff" in row for row in rows)


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_plot_writes_a_png_of_the_asked_size_with_curves_best_and_pruned_marks(
        cluster, module_namespace, finished, tmp_path):
    from PIL import Image

    out = tmp_path / "curves.png"
    result = run(cluster, module_namespace, "plot", "cli", "-o", str(out), "--size", "1000x600",
                 "--prometheus-url", cluster.prometheus_url)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "Prometheus" in result.output
    assert png_size(out) == (1000, 600)
    shutil.copy(out, PLOT_COPY)
    colours = {colour for _, colour in Image.open(out).convert("RGB").getcolors(1 << 20)}
    assert (0xDD, 0x84, 0x52) in colours, "the best trial's highlight colour is missing"
    assert (0xC4, 0x4E, 0x52) in colours, "the pruned trials' x markers are missing"
    assert len(colours) > 50, "the plot looks empty"


def test_plot_without_prometheus_falls_back_to_the_trial_records(
        cluster, module_namespace, finished, tmp_path):
    out = tmp_path / "records.png"
    closed = f"http://127.0.0.1:{free_port()}"
    result = run(cluster, module_namespace, "plot", "cli", "-o", str(out),
                 "--prometheus-url", closed)
    assert result.exit_code == 0, result.output
    assert "rung values and final metrics" in result.output and "Connection refused" in result.output
    assert png_size(out) == (1200, 700)


def test_prometheus_range_query_gives_each_trials_curve(cluster, module_namespace, finished):
    from kubetune.client.experiments import ExperimentClient
    from kubetune.client.history import fetch_history

    status = finished["status"]
    start = datetime.fromisoformat(status["startTime"].replace("Z", "+00:00")).timestamp()
    end = datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00")).timestamp()
    scraped = fetch_history(cluster.prometheus_url, module_namespace, "cli", start - 5, end + 5)
    assert set(scraped) == {f"cli-{i}" for i in range(len(QUALITIES))}
    best = scraped[best_name()]
    assert len(best) >= 3, f"expected several of the 9 steps from Prometheus, got {sorted(best)}"
    for step, metrics in best.items():
        assert metrics["accuracy"] == pytest.approx(curve(max(QUALITIES), step))
        assert metrics["loss"] == pytest.approx(1 - curve(max(QUALITIES), step))

    ec = ExperimentClient(cluster.kubeconfig, namespace=module_namespace)
    histories, note = ec.histories(finished, ec.list_trials("cli"))
    assert "Prometheus" in note  # the local cluster's, found from the kubeconfig
    assert set(histories[best_name()]) >= set(best) | {1, 3, 9}  # scraped steps + rungs + final


def test_logs_print_the_trial_pods_output(cluster, module_namespace, finished):
    flaky = f"cli-{FLAKY_INDEX}"
    first = run(cluster, module_namespace, "logs", flaky, "--attempt", "1")
    assert first.exit_code == 0, first.output
    assert "scripted failure on attempt 1" in first.output
    latest = run(cluster, module_namespace, "logs", flaky)
    assert latest.exit_code == 0, latest.output
    assert "scripted failure" not in latest.output


def test_watch_of_a_finished_experiment_prints_its_summary_and_exits_zero(
        cluster, module_namespace, finished):
    result = run(cluster, module_namespace, "watch", "cli")
    assert result.exit_code == 0, result.output
    assert "Succeeded: 6/6 trials done" in result.output
    assert best_name() in result.output


@pytest.mark.parametrize("command", [["status", "nope"], ["trials", "nope"], ["plot", "nope"],
                                     ["watch", "nope"], ["logs", "nope-0"]])
def test_a_missing_experiment_or_trial_is_one_line_on_stderr_and_exit_1(
        cluster, module_namespace, crds, command):
    result = run(cluster, module_namespace, *command)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "not found in namespace" in result.stderr and "'nope" in result.stderr


def test_an_unreachable_cluster_is_one_line_on_stderr_and_exit_1(cluster, tmp_path):
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    port = free_port()
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    kubeconfig = tmp_path / "dead.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["status", "anything", "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: cannot reach the Kubernetes API at "
                                    f"https://127.0.0.1:{port}")
