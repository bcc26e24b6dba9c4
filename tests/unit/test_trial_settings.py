"""kubetune.trial.settings: the trial pod's environment, read once into TrialSettings."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.trial import TrialSettings


def test_settings_from_env_read_the_whole_contract(tmp_path: Path) -> None:
    settings = TrialSettings.from_env(
        {
            "KUBETUNE_CONFIG": '{"lr": 0.01, "hidden_size": 128}',
            "KUBETUNE_EXPERIMENT": "mnist",
            "KUBETUNE_TRIAL": "mnist-7",
            "KUBETUNE_METRICS_PORT": "9100",
            "KUBETUNE_MILESTONES": "9, 1,3,",
            "KUBETUNE_METRIC": "accuracy",
            "KUBETUNE_CHECKPOINT_DIR": str(tmp_path),
            "KUBETUNE_TERMINATION_LOG": str(tmp_path / "log"),
            "KUBETUNE_LINGER_SECONDS": "2.5",
        }
    )
    assert settings.config == {"lr": 0.01, "hidden_size": 128}
    assert (settings.experiment, settings.trial) == ("mnist", "mnist-7")
    assert settings.metrics_port == 9100
    assert settings.milestones == (1, 3, 9)
    assert settings.metric == "accuracy"
    assert settings.checkpoint_dir == tmp_path
    assert settings.termination_log == tmp_path / "log"
    assert settings.linger_seconds == 2.5


def test_settings_defaults_when_env_is_empty() -> None:
    settings = TrialSettings.from_env({})
    assert settings.config == {}
    assert settings.metrics_port == 8000
    assert settings.milestones == ()
    assert settings.metric is None
    assert settings.termination_log == Path("/dev/termination-log")
    assert settings.linger_seconds == 0.0  # the termination message has the final report


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("KUBETUNE_CONFIG", "{lr: 1}", "KUBETUNE_CONFIG is not valid JSON"),
        ("KUBETUNE_CONFIG", "[1, 2]", "KUBETUNE_CONFIG must be a JSON object"),
        ("KUBETUNE_MILESTONES", "1,three", "KUBETUNE_MILESTONES must be comma-separated"),
        ("KUBETUNE_METRICS_PORT", "http", "KUBETUNE_METRICS_PORT must be a port"),
    ],
)
def test_bad_env_values_are_errors_naming_the_variable(name: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrialSettings.from_env({name: text})
