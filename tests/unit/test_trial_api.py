"""kubetune.trial: the metric contract seen from the outside.

Metrics are scraped over real HTTP and parsed with prometheus-client's own
parser. SIGTERM and interpreter exit, in real subprocesses, are in
test_trial_process.py.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubetune.devcluster.processes import free_port
from kubetune.trial import MetricsPortError, Session, TrialSettings, parse_termination_message
from kubetune.trial.metrics import ReportedState, termination_message

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def make_session(tmp_path: Path) -> Iterator[Callable[..., Session]]:
    sessions: list[Session] = []

    def make(**overrides: Any) -> Session:
        settings: dict[str, Any] = {
            "metrics_port": free_port(),
            "metrics_address": "127.0.0.1",
            "termination_log": tmp_path / "termination-log",
            "linger_seconds": 0.0,
        }
        settings.update(overrides)
        session = Session(TrialSettings(**settings)).start()
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def read_message(path: Path) -> dict[str, Any]:
    return parse_termination_message(path.read_text())


# --- Prometheus exposition ----------------------------------------------------------------


def test_scrape_shows_latest_step_and_metrics(make_session: Callable[..., Session]) -> None:
    session = make_session()
    session.report(step=1, accuracy=0.5, loss=2.0)
    session.report(step=2, accuracy=0.75, loss=1.25)

    samples = scrape(session.metrics_port or 0)

    assert value(samples, "kubetune_trial_step") == 2
    assert value(samples, "kubetune_trial_metric", metric="accuracy") == 0.75
    assert value(samples, "kubetune_trial_metric", metric="loss") == 1.25
    assert value(samples, "kubetune_trial_finished") == 0
    assert value(samples, "kubetune_trial_last_report_timestamp_seconds") == pytest.approx(
        time.time(), abs=60
    )


def test_exports_no_identity_labels(make_session: Callable[..., Session]) -> None:
    session = make_session(experiment="exp", trial="exp-3", milestones=(1,))
    session.report(step=1, accuracy=0.5)

    labels = {name for (_, pairs) in scrape(session.metrics_port or 0) for name, _ in pairs}

    assert labels <= {"metric", "milestone"}


def test_rung_values_come_from_first_report_at_or_past_each_milestone(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(milestones=(1, 3, 9), metric="accuracy")
    session.report(step=2, accuracy=0.2, loss=3.0)
    session.report(step=5, accuracy=0.5, loss=2.0)
    session.report(step=10, accuracy=0.7, loss=1.0)
    session.report(step=11, accuracy=0.99, loss=0.1)  # later reports change no rung
    session.report(step=20, accuracy=0.98, loss=0.1)

    samples = scrape(session.metrics_port or 0)

    for milestone, step, accuracy in (("1", 2, 0.2), ("3", 5, 0.5), ("9", 10, 0.7)):
        assert value(samples, "kubetune_trial_rung_step", milestone=milestone) == step
        assert (
            value(samples, "kubetune_trial_rung_value", metric="accuracy", milestone=milestone)
            == accuracy
        )
    rung_metrics = {dict(pairs)["metric"] for name, pairs in samples if name.endswith("rung_value")}
    assert rung_metrics == {"accuracy"}  # the objective only


def test_one_report_past_several_milestones_records_them_all(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(milestones=(1, 3, 9), metric="accuracy")
    session.report(step=12, accuracy=0.4)

    samples = scrape(session.metrics_port or 0)

    assert {
        m: value(samples, "kubetune_trial_rung_step", milestone=m) for m in ("1", "3", "9")
    } == {"1": 12, "3": 12, "9": 12}


def test_without_objective_rungs_are_kept_for_every_metric(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(milestones=(2,))
    session.report(step=2, accuracy=0.6, loss=0.9)

    samples = scrape(session.metrics_port or 0)

    assert value(samples, "kubetune_trial_rung_value", metric="accuracy", milestone="2") == 0.6
    assert value(samples, "kubetune_trial_rung_value", metric="loss", milestone="2") == 0.9


def test_rung_waits_for_first_report_that_has_the_objective(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(milestones=(3,), metric="accuracy")
    session.report(step=3, loss=1.0)
    session.report(step=4, accuracy=0.8)

    samples = scrape(session.metrics_port or 0)

    assert value(samples, "kubetune_trial_rung_step", milestone="3") == 4
    assert value(samples, "kubetune_trial_rung_value", metric="accuracy", milestone="3") == 0.8


def test_non_finite_metrics_are_exported_as_such(make_session: Callable[..., Session]) -> None:
    session = make_session(metric="loss", milestones=(1,))
    session.report(step=1, loss=float("nan"), up=float("inf"), down=float("-inf"))

    samples = scrape(session.metrics_port or 0)

    assert math.isnan(value(samples, "kubetune_trial_metric", metric="loss"))
    assert value(samples, "kubetune_trial_metric", metric="up") == math.inf
    assert value(samples, "kubetune_trial_metric", metric="down") == -math.inf
    raw = json.loads(session.settings.termination_log.read_text())
    assert raw["metrics"] == {"down": "-Infinity", "loss": "NaN", "up": "Infinity"}
    assert raw["rungs"]["1"]["value"] == "NaN"


def test_port_in_use_error_names_port_and_env_var(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = TrialSettings(
            metrics_port=port, metrics_address="127.0.0.1", termination_log=tmp_path / "log"
        )
        with pytest.raises(MetricsPortError, match=rf"{port}.*KUBETUNE_METRICS_PORT"):
            Session(settings).start()


# --- reporting errors ----------------------------------------------------------------------


def test_report_without_step_is_a_clear_type_error(make_session: Callable[..., Session]) -> None:
    session = make_session(metrics_port=0)
    with pytest.raises(TypeError, match=r"step=<int>"):
        session.report(accuracy=0.5)


def test_report_with_a_dict_explains_the_keyword_form(make_session: Callable[..., Session]) -> None:
    session = make_session(metrics_port=0)
    with pytest.raises(TypeError, match=r"keyword arguments"):
        session.report({"accuracy": 0.5})


@pytest.mark.parametrize("bad", [True, "0.5", None, [0.5]])
def test_non_numeric_metric_is_a_type_error_naming_it(
    make_session: Callable[..., Session], bad: object
) -> None:
    session = make_session(metrics_port=0)
    with pytest.raises(TypeError, match=r"'accuracy'"):
        session.report(step=1, accuracy=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_step", [1.0, True, "1"])
def test_non_integer_step_is_a_type_error(
    make_session: Callable[..., Session], bad_step: object
) -> None:
    session = make_session(metrics_port=0)
    with pytest.raises(TypeError, match=r"step"):
        session.report(step=bad_step, accuracy=0.5)  # type: ignore[arg-type]


def test_decreasing_step_is_rejected_and_repeated_step_is_allowed(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(metrics_port=0)
    session.report(step=3, accuracy=0.5)
    session.report(step=3, accuracy=0.6)
    with pytest.raises(ValueError, match=r"step=2.*previous report had step=3"):
        session.report(step=2, accuracy=0.7)
    with pytest.raises(ValueError, match=r">= 0"):
        make_session(metrics_port=0).report(step=-1, accuracy=0.7)


def test_report_after_finish_is_an_error(make_session: Callable[..., Session]) -> None:
    session = make_session(metrics_port=0)
    session.report(step=1, accuracy=0.5)
    session.finish()
    with pytest.raises(RuntimeError, match=r"after finish"):
        session.report(step=2, accuracy=0.6)


# --- config --------------------------------------------------------------------------------


def test_config_returns_a_copy(make_session: Callable[..., Session]) -> None:
    session = make_session(metrics_port=0, config={"layers": [1, 2]})
    session.config()["layers"].append(3)
    assert session.config() == {"layers": [1, 2]}


# --- termination message and linger --------------------------------------------------------


def test_every_report_rewrites_the_termination_message_unfinished(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(metrics_port=0, milestones=(1,), metric="accuracy")
    session.report(step=1, accuracy=0.5, loss=1.0)
    session.report(step=2, accuracy=0.6, loss=0.8)

    assert read_message(session.settings.termination_log) == {
        "step": 2,
        "metrics": {"accuracy": 0.6, "loss": 0.8},
        "rungs": {"1": {"step": 1, "value": 0.5}},
        "finished": False,
    }


def test_finish_writes_final_metrics_rungs_and_finished(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(milestones=(1, 3), metric="accuracy")
    session.report(step=2, accuracy=0.5, loss=1.0)
    session.report(step=4, accuracy=0.7, loss=0.5)
    session.finish()

    assert read_message(session.settings.termination_log) == {
        "step": 4,
        "metrics": {"accuracy": 0.7, "loss": 0.5},
        "rungs": {"1": {"step": 2, "value": 0.5}, "3": {"step": 4, "value": 0.7}},
        "finished": True,
    }


def test_rungs_without_objective_list_every_metric_in_the_message(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(metrics_port=0, milestones=(1,))
    session.report(step=1, accuracy=0.5, loss=1.0)

    assert read_message(session.settings.termination_log)["rungs"] == {
        "1": {"step": 1, "metrics": {"accuracy": 0.5, "loss": 1.0}}
    }


def test_linger_ends_as_soon_as_the_final_metrics_are_scraped(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(linger_seconds=30.0)
    session.report(step=1, accuracy=0.5)
    port = session.metrics_port or 0
    scraped: list[Samples] = []
    scraper = threading.Timer(0.3, lambda: scraped.append(scrape(port)))
    scraper.start()

    started = time.monotonic()
    session.finish()
    elapsed = time.monotonic() - started

    scraper.join()
    assert 0.2 < elapsed < 5
    assert value(scraped[0], "kubetune_trial_finished") == 1


def test_linger_waits_for_a_scrape_after_finish_then_gives_up(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(linger_seconds=0.6)
    session.report(step=1, accuracy=0.5)
    scrape(session.metrics_port or 0)  # before finish(): does not show finished=1

    started = time.monotonic()
    session.finish()

    assert time.monotonic() - started >= 0.5


def test_message_over_4096_bytes_keeps_step_objective_and_latest_rungs() -> None:
    state = ReportedState(milestones=tuple(range(1, 200)), objective="accuracy")
    for step in range(1, 200):
        state.record(step, {"accuracy": step / 200, **{f"m{i:03d}": 1.0 for i in range(300)}}, 0.0)

    text = termination_message(state)
    message = parse_termination_message(text)

    assert len(text.encode()) <= 4096
    assert message["truncated"] is True
    assert message["step"] == 199
    assert message["metrics"] == {"accuracy": 199 / 200}
    assert "199" in message["rungs"] and "1" not in message["rungs"]


# --- checkpoints ---------------------------------------------------------------------------


def test_latest_checkpoint_is_the_highest_complete_step(
    make_session: Callable[..., Session], tmp_path: Path
) -> None:
    session = make_session(metrics_port=0, checkpoint_dir=tmp_path / "ckpt")
    assert session.get_checkpoint() is None
    for step in (1, 2, 3):
        with session.save_checkpoint(step=step) as path:
            (path / "state.txt").write_text(str(step))
    with pytest.raises(RuntimeError), session.save_checkpoint(step=4) as path:
        (path / "state.txt").write_text("half")
        raise RuntimeError("disk full")

    latest = session.get_checkpoint()

    assert latest is not None and latest.step == 3
    assert (latest.path / "state.txt").read_text() == "3"
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["step-00000002", "step-00000003"]  # two kept, no half-written one


def test_rungs_reached_by_an_earlier_attempt_survive_a_retry(
    make_session: Callable[..., Session], tmp_path: Path
) -> None:
    first = make_session(metrics_port=0, milestones=(1, 3), checkpoint_dir=tmp_path / "ckpt")
    first.report(step=1, accuracy=0.3)
    first.close()

    retry = make_session(milestones=(1, 3), checkpoint_dir=tmp_path / "ckpt")
    retry.report(step=4, accuracy=0.9)

    samples = scrape(retry.metrics_port or 0)
    assert value(samples, "kubetune_trial_rung_step", milestone="1") == 1
    assert value(samples, "kubetune_trial_rung_value", metric="accuracy", milestone="1") == 0.3
    assert value(samples, "kubetune_trial_rung_step", milestone="3") == 4
