"""Which experiment Prometheus URLs the operator may query: none by default, else those
under an allowed prefix (scheme, host and port exactly, then whole path segments); the
refusal's message depends on the URL's text alone."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.api import SpecError, validate_experiment_spec
from kubetune.controller import reconcile
from kubetune.controller.main import parse_settings
from kubetune.controller.prometheus import (
    URL_NOT_ALLOWED,
    URLS_OFF,
    experiment_url_refusal,
    url_allowed,
    url_prefix_problem,
)
from kubetune.controller.settings import OperatorSettings

OWN = "http://prometheus:9090"
PREFIXES = ("http://prom.monitoring:9090", "https://metrics.example.com/team-a/")


@pytest.mark.parametrize("url", [
    "http://prom.monitoring:9090",
    "http://prom.monitoring:9090/",
    "http://PROM.monitoring:9090/sub/path",
    "https://metrics.example.com/team-a",
    "https://metrics.example.com:443/team-a/prometheus",
])
def test_urls_under_an_allowed_prefix_are_allowed(url: str) -> None:
    assert url_allowed(url, PREFIXES)
    assert experiment_url_refusal(url, PREFIXES, OWN) is None


@pytest.mark.parametrize("url", [
    "http://prom.monitoring:9091",                       # another port
    "http://prom.monitoring",                            # port 80, not 9090
    "https://prom.monitoring:9090",                      # another scheme
    "http://prom.monitoring:9090.evil.example",          # not a port at all
    "http://prom.monitoring.evil:9090",                  # another host
    "https://metrics.example.com/team-ab",               # a sibling path, not below
    "https://metrics.example.com/",                      # above the prefix
    "https://metrics.example.com/team-a/../team-b",      # dot segments
    "https://metrics.example.com/team-a/%2e%2e/team-b",  # escaped dot segments
    "http://prom.monitoring:9090@169.254.169.254/",      # credentials hide the real host
    "http://user:pw@prom.monitoring:9090/",
    "http://prom.monitoring:9090/?target=x",             # a query
    "http://prom.monitoring:9090/#x",                    # a fragment
    "http://prom.monitoring:9090/a b",                   # spaces
    "http://prom.monitoring:9090\\@evil/",               # a backslash
    "ftp://prom.monitoring:9090",
])
def test_urls_outside_every_prefix_are_refused(url: str) -> None:
    assert not url_allowed(url, PREFIXES)
    assert experiment_url_refusal(url, PREFIXES, OWN) == URL_NOT_ALLOWED


def test_by_default_no_experiment_url_is_allowed_but_the_operators_own() -> None:
    assert experiment_url_refusal("http://prom.monitoring:9090", (), OWN) == URLS_OFF
    assert experiment_url_refusal(OWN + "/", (), OWN) is None


@pytest.mark.parametrize("url", ["http://10.0.0.1:22", "http://db.internal:5432/x",
                                 "https://prom.monitoring:9090/"])
def test_the_refusal_says_nothing_about_the_target(url: str) -> None:
    messages = {experiment_url_refusal(url, (), OWN), experiment_url_refusal(url, PREFIXES, OWN)}
    assert messages == {URLS_OFF, URL_NOT_ALLOWED}
    for message in messages:
        assert message is not None
        assert url not in message and "refused" not in message and "open" not in message


def _spec(**extra: Any) -> Any:
    return validate_experiment_spec({
        "objective": {"metric": "accuracy", "mode": "max"},
        "searchSpace": {"x": {"uniform": [0, 1]}},
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "i",
                                                   "command": ["python"]}]}},
        **extra})


def test_the_tick_fails_the_spec_before_anything_is_read() -> None:
    spec = _spec(prometheus={"url": "http://10.0.0.1:9090"})
    with pytest.raises(SpecError) as refused:
        reconcile._check_prometheus_url(OperatorSettings(), spec)
    assert str(refused.value) == f"spec.prometheus.url: {URLS_OFF}"
    allowing = OperatorSettings(experiment_prometheus_prefixes=("http://10.0.0.1:9090",))
    reconcile._check_prometheus_url(allowing, spec)
    reconcile._check_prometheus_url(OperatorSettings(), _spec())


def test_prefixes_come_from_the_environment_and_flags() -> None:
    env = {"KUBETUNE_EXPERIMENT_PROMETHEUS_URL_PREFIXES": " http://a:9090 ,,https://b/x"}
    assert parse_settings([], env).experiment_prometheus_prefixes == ("http://a:9090",
                                                                       "https://b/x")
    flags = parse_settings(["--allow-experiment-prometheus", "http://c:1",
                            "--allow-experiment-prometheus", "http://d:2"], env)
    assert flags.experiment_prometheus_prefixes == ("http://c:1", "http://d:2")
    assert parse_settings([], {}).experiment_prometheus_prefixes == ()


def test_a_prefix_that_is_no_url_stops_the_operator(capsys: pytest.CaptureFixture[str]) -> None:
    assert url_prefix_problem("http://ok:9090/") is None
    with pytest.raises(SystemExit):
        parse_settings(["--allow-experiment-prometheus", "prom:9090"], {})
    assert "'prom:9090' is not an http:// or https:// URL" in capsys.readouterr().err
