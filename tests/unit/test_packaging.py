"""Dependencies follow the roles: what `pip install kubetune` and its extras put in a venv.

The wheel is built once from the checkout (offline: the venv's own setuptools).
A fresh venv gets it with its dependencies resolved by uv (from uv's cache or the
index; without either the install tests are skipped) and runs a trial there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from collections.abc import Iterator
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"pandas", "matplotlib", "torch"}  # numpy comes with optuna, the operator's search


def _uv() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed (make venv installs it)")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("kubetune-*.whl")
    return built


@pytest.fixture(scope="module")
def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode())


def _requirements(metadata: Message, extra: str | None) -> set[str]:
    """Distribution names an install with `extra` (None: no extra) asks for directly."""
    names = set()
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if (marker is None and extra is None) or (
            marker is not None and extra is not None and marker.evaluate({"extra": extra})
        ):
            names.add(requirement.name.lower())
    return names


def test_plain_install_asks_for_prometheus_client_only(metadata: Message) -> None:
    assert _requirements(metadata, None) == {"prometheus-client"}


def test_operator_extra_carries_no_plotting_or_dataframes(metadata: Message) -> None:
    operator = _requirements(metadata, "operator")
    assert {"kopf", "kubernetes", "pydantic"} <= operator
    assert not operator & HEAVY


def test_client_extra_has_what_the_cli_and_plots_import(metadata: Message) -> None:
    assert {"kubernetes", "click", "rich", "pandas", "matplotlib", "pyyaml"} <= _requirements(
        metadata, "client"
    )


def test_licence_is_declared_as_spdx_and_shipped(metadata: Message, wheel: Path) -> None:
    assert metadata["License-Expression"] == "Apache-2.0"
    with zipfile.ZipFile(wheel) as archive:
        licence = next(n for n in archive.namelist() if n.endswith("licenses/LICENSE"))
        assert "Apache License" in archive.read(licence).decode()[:200]


def test_wheel_carries_the_dev_cluster_files_and_not_the_trainer(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {
        "kubetune/devcluster/build-binaries.sh",
        "kubetune/devcluster/kwok-stages.yaml",
        "kubetune/py.typed",
    } <= names
    assert {n.split("/")[0] for n in names if not n.startswith("kubetune-")} == {"kubetune"}


def test_reference_trainer_is_its_own_distribution() -> None:
    project = tomllib.loads((ROOT / "trainer_image" / "pyproject.toml").read_text())["project"]
    assert project["name"] == "kubetune-trainer"
    assert {Requirement(d).name for d in project["dependencies"]} >= {
        "kubetune",
        "torch",
        "torchvision",
        "scikit-learn",
    }
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert root["tool"]["setuptools"]["packages"]["find"]["where"] == ["operator"]


@pytest.fixture(scope="module")
def sdk_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    venv = tmp_path_factory.mktemp("sdk-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [_uv(), "pip", "install", "-q", "--python", str(python), str(wheel)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        pytest.skip(f"prometheus-client is neither in uv's cache nor reachable: {done.stderr}")
    yield python


def test_plain_install_puts_only_prometheus_client_beside_kubetune(sdk_venv: Path) -> None:
    listing = subprocess.run(
        [_uv(), "pip", "list", "--format", "json", "--python", str(sdk_venv)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert {d["name"] for d in json.loads(listing)} == {"kubetune", "prometheus-client"}


def test_a_trial_reports_from_the_plain_install(sdk_venv: Path, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        from kubetune import trial
        for epoch in (1, 2, 3):
            trial.report(step=epoch, accuracy=epoch / 4)
        print(sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)))
    """)
    )
    env = {
        "KUBETUNE_METRICS_PORT": "0",
        "KUBETUNE_MILESTONES": "1,3",
        "KUBETUNE_TERMINATION_LOG": str(tmp_path / "message"),
        "KUBETUNE_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [str(sdk_venv), str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['__main__', 'kubetune', 'prometheus_client']"
    message = json.loads((tmp_path / "message").read_text())
    assert message["step"] == 3 and message["finished"] is True
    assert sorted(message["rungs"]) == ["1", "3"]


def test_operator_extra_resolves_without_plotting_or_dataframes(
    sdk_venv: Path, wheel: Path
) -> None:
    done = subprocess.run(
        [
            _uv(),
            "pip",
            "install",
            "--dry-run",
            "--python",
            str(sdk_venv),
            f"kubetune[operator] @ {wheel.as_uri()}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if done.returncode != 0:
        pytest.skip(f"the operator's dependencies are neither cached nor reachable: {done.stderr}")
    would_install = {
        line.split()[1].split("==")[0]
        for line in done.stderr.splitlines()
        if line.strip().startswith("+ ")
    }
    assert "kopf" in would_install
    assert not would_install & HEAVY
