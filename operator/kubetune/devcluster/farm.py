"""The trial farm: simulated trials run as threads of the runner, not processes of their own.

A pod whose template carries the annotation `kubetune.io/dev-farm: "true"`
(`contract.ANNOTATION_FARM`) and whose container runs the reference trainer's
simulated mode (`python -m kubetune_trainer --dataset simulated ...`) is run by
`kubetune_trainer.farm.FarmedTrial` in a thread of the runner: the same parsing of
its arguments, the same `kubetune.trial` session made from the env the runner built
for the pod (so its /metrics is served on the pod's own port, registered with
Prometheus as any pod's, with the same series and rungs), the same curve,
checkpoints and termination message, and the exit code the process would have.
Deletion is imitated as for a process: SIGTERM stops the trial (it writes its
message and ends 0), SIGKILL after the grace period ends it with 137. A farmed pod
costs a thread and an HTTP server instead of an interpreter, so a scale benchmark
measures the operator rather than the machine. The runner never farms a pod
without the annotation; one with the annotation and another command fails to
start (StartError) with a message saying so. Memory limits are not enforced on
farmed pods (they share the runner's process).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kubetune import contract
from kubetune.devcluster.containers import LocalContainer
from kubetune.devcluster.podenv import expand
from kubetune.devcluster.podstatus import now

_PYTHONS = ("python", "python3", sys.executable)


def farmed(pod: dict[str, Any]) -> bool:
    """Whether the pod asks to be farmed (its annotation is exactly "true")."""
    annotations = pod["metadata"].get("annotations") or {}
    return str(annotations.get(contract.ANNOTATION_FARM, "")).lower() == "true"


def trainer_args(argv: list[str]) -> list[str] | None:
    """The trainer's arguments when argv runs `python -m kubetune_trainer`, else None."""
    if len(argv) >= 3 and argv[0] in _PYTHONS and argv[1:3] == ["-m", "kubetune_trainer"]:
        return argv[3:]
    return None


@dataclass
class _Host:
    """Stands for a container's process: the runner's own PID (the container ID shows it)."""

    pid: int


@dataclass
class FarmedContainer(LocalContainer):
    """A container run by the farm: a `FarmedTrial` thread, signalled as a process would be."""

    trial: Any = None
    """The `kubetune_trainer.farm.FarmedTrial`."""

    def signal(self, sig: int) -> None:
        if sig == 9:  # SIGKILL
            self.trial.kill()
        else:
            self.trial.stop()

    def over_memory(self) -> bool:
        return False

    def exited(self) -> int | None:
        code: int | None = self.trial.exit_code
        return code


def start_farmed(container: dict[str, Any], env: dict[str, str], workdir: Path,
                 log_file: Path, pod_name: str, *, home: Path | None = None,
                 state_dir: Path | None = None) -> LocalContainer | str:
    """`containers.start_container` for a farmed pod: same env, same files, a thread."""
    del home, state_dir  # the simulated trainer uses neither its HOME nor its working directory
    workdir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    message_file = workdir / "termination-log"
    env[contract.ENV_TERMINATION_LOG] = str(message_file)
    env.setdefault("HOSTNAME", pod_name)
    argv = [expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
    args = trainer_args(argv)
    if args is None or not ({"simulated", "--dataset=simulated"} & set(args)):
        return (f"container {container['name']}: {contract.ANNOTATION_FARM}: the trial farm runs "
                "only the simulated trainer (python -m kubetune_trainer --dataset simulated ...), "
                f"not {' '.join(argv) or 'an empty command'}; remove the annotation to run it "
                "as a process")
    farm = importlib.import_module("kubetune_trainer.farm")
    trial = farm.FarmedTrial(args, env, log_file).start()
    return FarmedContainer(
        name=container["name"], image=container.get("image", ""),
        proc=cast("subprocess.Popen[bytes]", _Host(os.getpid())), started_at=now(),
        message_file=message_file,
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        trial=trial)
