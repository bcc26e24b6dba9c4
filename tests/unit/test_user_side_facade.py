"""The user side's entry points: `import kubetune` typed and light, the CLI without its extra,
and the dev cluster's record (contract.ClusterState) as the client reads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubetune import contract, tune
from kubetune.client.connection import local_cluster_for, resolve_kubeconfig

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)


def test_mypy_sees_kubetune_tuner_as_the_real_class(tmp_path: Path) -> None:
    mypy = pytest.importorskip("mypy.api")
    snippet = tmp_path / "snippet.py"
    snippet.write_text("import kubetune\nt: int = kubetune.Tuner\nr: int = kubetune.ResultGrid\n")
    out, err, status = mypy.run(["--config-file", str(ROOT / "pyproject.toml"),
                                 "--follow-imports=silent", str(snippet)])
    assert status == 1, out + err
    assert 'expression has type "type[Tuner]", variable has type "int"' in out
    assert 'expression has type "type[ResultGrid]", variable has type "int"' in out


def test_importing_kubetune_loads_no_client_dependency() -> None:
    result = python("import sys, kubetune, kubetune.trial\n"
                    "loaded = {'click', 'rich', 'kubernetes', 'pandas', 'matplotlib', 'requests',\n"
                    "          'pydantic', 'kubetune.client'} & set(sys.modules)\n"
                    "assert not loaded, loaded")
    assert result.returncode == 0, result.stderr


def test_the_cli_without_click_names_the_extra_in_one_line() -> None:
    # `None` in sys.modules makes `import click` raise ModuleNotFoundError, as if absent.
    result = python("import sys; sys.modules['click'] = None\n"
                    "from kubetune.client.cli import main\n"
                    "main()")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: kubetune's client needs click, which is not installed: "
        "pip install 'kubetune[client]'"]


def test_a_cli_command_missing_a_dependency_names_the_extra_in_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    result = python("import sys; sys.modules['kubernetes'] = None\n"
                    "from kubetune.client.cli import main\n"
                    "main(['status', 'x', '--kubeconfig', sys.argv[1]])", str(kubeconfig))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: kubetune's client needs kubernetes, which is not installed: "
        "pip install 'kubetune[client]'"]


def test_an_unrelated_missing_module_still_raises() -> None:
    result = python("from kubetune.client.cli import missing_client_extra\n"
                    "assert missing_client_extra(ModuleNotFoundError(name='torch')) is None\n"
                    "assert 'kubetune[client]' in missing_client_extra("
                    "ModuleNotFoundError(name='pandas.core'))")
    assert result.returncode == 0, result.stderr


# -- the dev cluster's record, as the client reads it ---------------------------------------


def record(state_dir: Path, pids: dict[str, int]) -> contract.ClusterState:
    state_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = state_dir / "admin.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    state = contract.ClusterState(
        state_dir=str(state_dir), kubeconfig=str(kubeconfig), apiserver_url="https://127.0.0.1:1",
        prometheus_url="http://127.0.0.1:2", ports={"apiserver": 1}, pids=pids)
    state.save()
    return state


def test_the_default_cluster_dir_follows_the_environment_at_call_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.ENV_CLUSTER_DIR, str(tmp_path / "here"))
    assert contract.default_cluster_dir() == tmp_path / "here"
    monkeypatch.delenv(contract.ENV_CLUSTER_DIR)
    assert contract.default_cluster_dir().parts[-2:] == (f"kubetune-{os.getuid()}", "cluster")


def test_a_recorded_cluster_is_running_only_while_all_its_processes_live(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert contract.running_cluster_state(tmp_path / "none") is None
    record(tmp_path / "up", {"etcd": os.getpid()})
    assert contract.running_cluster_state(tmp_path / "up") == contract.ClusterState.load(
        tmp_path / "up")
    record(tmp_path / "down", {"etcd": os.getpid(), "runner": dead.pid})
    assert contract.running_cluster_state(tmp_path / "down") is None
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / contract.CLUSTER_STATE_FILE).write_text(json.dumps({"pids": {}}))
    assert contract.running_cluster_state(tmp_path / "garbled") is None


def test_the_client_uses_a_running_local_clusters_admin_kubeconfig(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = record(tmp_path / "cluster", {"etcd": os.getpid()})
    monkeypatch.setenv(contract.ENV_CLUSTER_DIR, state.state_dir)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    kubeconfig = resolve_kubeconfig()
    assert kubeconfig == Path(state.kubeconfig)
    assert local_cluster_for(kubeconfig) == state
    assert local_cluster_for(tmp_path / "elsewhere.kubeconfig") is None
    assert contract.pod_log_path(state.state_dir, "ns", "t-0-1") == (
        tmp_path / "cluster" / "pods" / "ns" / "t-0-1.log")


# -- domains: Ray's calls, the api's schema ------------------------------------------------------


@pytest.mark.parametrize("domain", [
    tune.uniform(0, 1), tune.quniform(0.0, 1.0, 0.25), tune.loguniform(1e-4, 1e-1),
    tune.qloguniform(1e-3, 1.0, 1e-3), tune.randn(), tune.qrandn(0, 1, 0.5), tune.randint(1, 4),
    tune.qrandint(1, 10, 3), tune.lograndint(1, 100), tune.qlograndint(2, 16, 2),
    tune.choice([64, 128]), tune.grid_search(["sgd", "adam"]),
], ids=repr)
def test_every_tune_domain_is_an_entry_the_api_model_accepts(domain: tune.Domain) -> None:
    model = domain.to_model()
    assert model.kind == domain.kind
    assert model.arguments == list(domain.args)
