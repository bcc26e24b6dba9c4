"""The operator's settings are parsed once, from flags over the environment, and handlers are
registered on an explicit kopf registry with them; nothing in controller/ reads the environment
at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import kopf
import pytest

from kubetune.controller import handlers
from kubetune.controller.main import parse_settings
from kubetune.controller.settings import OperatorSettings

CONTROLLER = Path(__file__).resolve().parents[2] / "operator" / "kubetune" / "controller"


def test_defaults_without_flags_or_environment() -> None:
    assert parse_settings([], {}) == OperatorSettings()
    assert OperatorSettings().tick_seconds == 2.0 and OperatorSettings().namespaces == ()


def test_environment_is_read_and_flags_override_it() -> None:
    env = {"KUBETUNE_PROMETHEUS_URL": "http://env:9090", "KUBETUNE_TICK_SECONDS": "0.5",
           "KUBETUNE_METRICS_PORT": "9100", "KUBETUNE_HEALTH_PORT": "9101",
           "KUBETUNE_NAMESPACES": "a,,b"}
    from_env = parse_settings([], env)
    assert (from_env.prometheus_url, from_env.tick_seconds, from_env.metrics_port,
            from_env.health_port, from_env.namespaces) == ("http://env:9090", 0.5, 9100, 9101,
                                                           ("a", "b"))
    flags = parse_settings(["--prometheus-url", "http://flag:9090", "--tick", "1", "-n", "c",
                            "--namespace", "d", "--metrics-port", "1", "--health-port", "2",
                            "--kubeconfig", "/k", "-v"], env)
    assert flags == OperatorSettings(prometheus_url="http://flag:9090", tick_seconds=1.0,
                                     metrics_port=1, health_port=2, namespaces=("c", "d"),
                                     kubeconfig="/k", verbose=True)


def test_a_malformed_variable_is_named_on_the_command_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings([], {"KUBETUNE_TICK_SECONDS": "fast"})
    assert exited.value.code == 2
    assert "$KUBETUNE_TICK_SECONDS must be a number, got 'fast'" in capsys.readouterr().err


def test_a_failed_tick_is_retried_after_twice_the_tick_and_at_least_five_seconds() -> None:
    assert OperatorSettings(tick_seconds=1).retry_seconds == 5.0
    assert OperatorSettings(tick_seconds=4).retry_seconds == 8.0


def test_handlers_are_registered_with_the_settings_given() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register(registry, OperatorSettings(tick_seconds=0.5, prometheus_url="http://p"))
    (loop,) = registry._spawning.get_all_handlers()  # one reconcile loop per experiment
    assert (loop.id, loop.initial_delay, loop.backoff) == ("reconcile", 0, 5.0)
    assert sorted(h.id for h in registry._watching.get_all_handlers()) == [
        "wake-pods", "wake-trials"]
    activities = {h.id: h for h in registry._activities.get_all_handlers()}
    assert {"login", "configure", "prometheus"} <= set(activities)
    memo: Any = kopf.Memo()
    memo.kubetune = type("Ctx", (), {"settings": OperatorSettings(prometheus_url="http://p")})()
    assert activities["prometheus"].fn(memo=memo) == "http://p"
    assert [h.id for h in registry._changing.get_all_handlers()] == ["forget"]


def test_two_registries_hold_their_own_handlers() -> None:
    first, second = kopf.OperatorRegistry(), kopf.OperatorRegistry()
    handlers.register(first, OperatorSettings(tick_seconds=1))
    handlers.register(second, OperatorSettings(tick_seconds=3))
    assert [h.backoff for h in first._spawning.get_all_handlers()] == [5.0]
    assert [h.backoff for h in second._spawning.get_all_handlers()] == [6.0]


def _reads_environment(node: ast.AST) -> bool:
    return any((isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv", "environb"))
               or (isinstance(n, ast.Name) and n.id in ("environ", "getenv"))
               for n in ast.walk(node))


@pytest.mark.parametrize("path", sorted(CONTROLLER.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_of_the_operator_reads_the_environment_at_import_time(path: Path) -> None:
    tree = ast.parse(path.read_text())
    top_level = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef |
                                                          ast.ClassDef | ast.Import | ast.ImportFrom)]
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    class_level = [b for c in classes for b in c.body
                   if not isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef)]
    assert not [ast.unparse(n) for n in top_level + class_level if _reads_environment(n)]


def test_importing_the_operator_with_a_bad_environment_does_not_fail() -> None:
    code = ("import kubetune.__main__, kubetune.controller.handlers, "
            "kubetune.controller.reconcile, kubetune.controller.main")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"KUBETUNE_TICK_SECONDS": "fast", "KUBETUNE_METRICS_PORT": "x",
                                 "PATH": "/usr/bin:/bin"}, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_the_entry_point_imports_no_kubernetes_client_before_kubeconfig_is_set() -> None:
    # kubernetes.config takes its default kubeconfig from $KUBECONFIG when it is imported,
    # and kopf's login uses that default: --kubeconfig must be in place before the import.
    code = "import sys, kubetune.__main__; print('kubernetes' in sys.modules, 'kopf' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.split() == ["False", "False"]
