"""kubetune.trial in a real process: SIGTERM, interpreter exit, a crash, the import cost.

Each test runs a small trial script in a subprocess with the pod's environment,
as the kubelet would, and reads the termination message it leaves behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from kubetune import trial
from kubetune.trial import parse_termination_message
from tests.support.trial_env import reported_step, trial_env


def read_message(path: Path) -> dict[str, Any]:
    return parse_termination_message(path.read_text())




def _start(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_step(log: Path, step: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if (reported_step(log) or 0) >= step:
            return
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.02)
    raise AssertionError(f"no report of step {step} in {log}")


def _sigterm_and_wait(process: subprocess.Popen[str]) -> tuple[int, float, str]:
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    output, _ = process.communicate(timeout=10)
    return process.returncode, time.monotonic() - started, output


def test_sigterm_stops_a_loop_busy_inside_an_epoch(tmp_path: Path) -> None:
    process = _start(
        """
        from kubetune import trial
        trial.report(step=1, accuracy=0.25)
        total = 0
        while True:  # an epoch that never reports again
            total += 1
        """,
        trial_env(tmp_path),
    )
    _wait_for_step(tmp_path / "termination-log", 1, process)

    returncode, seconds, output = _sigterm_and_wait(process)

    assert returncode == 0, output
    assert seconds < 2
    message = read_message(tmp_path / "termination-log")
    assert message["step"] == 1 and message["finished"] is False


def test_sigterm_ends_the_process_even_if_the_stop_is_swallowed(tmp_path: Path) -> None:
    process = _start(
        """
        import time
        from kubetune import trial
        trial.report(step=2, accuracy=0.5)
        while True:
            try:
                time.sleep(0.05)
            except BaseException:
                pass
        """,
        trial_env(tmp_path, KUBETUNE_STOP_GRACE_SECONDS="0.5"),
    )
    _wait_for_step(tmp_path / "termination-log", 2, process)

    returncode, seconds, output = _sigterm_and_wait(process)

    assert returncode == 0, output
    assert 0.4 < seconds < 3
    assert read_message(tmp_path / "termination-log")["step"] == 2


def test_sigterm_inside_save_checkpoint_stops_after_it_is_complete(tmp_path: Path) -> None:
    process = _start(
        """
        import pathlib, time
        from kubetune import trial
        trial.report(step=1, accuracy=0.5)
        with trial.save_checkpoint(step=1) as path:
            pathlib.Path(path, "part1").write_text("x")
            print("writing", flush=True)
            time.sleep(0.5)
            pathlib.Path(path, "part2").write_text("y")
        time.sleep(30)
        """,
        trial_env(tmp_path),
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "writing"

    returncode, seconds, output = _sigterm_and_wait(process)

    assert returncode == 0, output
    assert seconds < 2
    assert sorted(p.name for p in (tmp_path / "ckpt" / "step-00000001").iterdir()) == [
        "part1",
        "part2",
    ]


def test_normal_exit_without_finish_writes_a_finished_message(tmp_path: Path) -> None:
    process = _start(
        """
        from kubetune import trial
        assert trial.config() == {"lr": 0.1}
        trial.report(step=3, accuracy=0.75)
        """,
        trial_env(tmp_path, KUBETUNE_CONFIG='{"lr": 0.1}'),
    )
    output, _ = process.communicate(timeout=20)

    assert process.returncode == 0, output
    assert read_message(tmp_path / "termination-log") == {
        "step": 3,
        "metrics": {"accuracy": 0.75},
        "rungs": {},
        "finished": True,
    }


def test_crash_leaves_an_unfinished_message(tmp_path: Path) -> None:
    process = _start(
        """
        from kubetune import trial
        trial.report(step=3, accuracy=0.75)
        raise RuntimeError("out of memory")
        """,
        trial_env(tmp_path),
    )
    output, _ = process.communicate(timeout=20)

    assert process.returncode == 1
    assert "out of memory" in output
    assert read_message(tmp_path / "termination-log")["finished"] is False


def test_module_api_is_importable_without_heavy_dependencies() -> None:
    code = "import sys, kubetune.trial; print(sorted({'torch', 'kubernetes', 'pydantic', 'kopf'} & set(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"
    assert callable(trial.report) and callable(trial.should_stop)
