"""One container of a pod the local runner plays: its process, its image, its memory.

The runner ignores images (every container runs as a local process in this Python
environment), but it imitates what a kubelet reports when an image cannot be had,
so an operator's handling of it can be tested on the dev cluster (what the process
is given, and what it is not, is `sandbox`'s):

- an image whose registry host ends in `.invalid` (a name that never resolves, RFC
  2606) cannot be pulled: ErrImagePull, then ImagePullBackOff, forever;
- an image reference that does not parse is InvalidImageName;
- `resources.limits.memory` is enforced as the kernel's OOM killer would: a container
  whose processes' resident memory passes the limit is SIGKILLed and reported
  OOMKilled (exit code 137).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune import contract
from kubetune.devcluster import sandbox
from kubetune.devcluster.podenv import expand
from kubetune.devcluster.podstatus import now

# The reference grammar of distribution/reference, enough to tell a typo from a name.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"^(?:(?P<host>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def image_problem(image: str) -> tuple[str, str] | None:
    """(waiting reason, kubelet message) when the image cannot be had, else None."""
    match = _REFERENCE.match(image or "")
    if match is None:
        return "InvalidImageName", f'Failed to apply default image tag "{image}": couldn\'t ' \
                                   "parse image name: invalid reference format"
    host = (match.group("host") or "").split(":")[0]
    if host.endswith(".invalid"):
        return "ErrImagePull", (f'failed to pull and unpack image "{image}": failed to resolve '
                                f"reference: dial tcp: lookup {host}: no such host")
    return None


def back_off_message(image: str) -> str:
    """What the kubelet says while it waits before pulling an image again."""
    return f'Back-off pulling image "{image}"'


def memory_bytes(quantity: object) -> int | None:
    """A Kubernetes memory quantity (512Mi, 1G, 1048576) in bytes; None when unset or odd."""
    match = _QUANTITY.match(str(quantity or ""))
    if match is None or match.group(2) not in _UNITS:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in process group `pgid` (from /proc)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(entry.path, "stat").read_text().rsplit(") ", 1)[1].split()
            if int(stat[2]) == pgid:  # field 5 of /proc/PID/stat: the process group
                total += int(stat[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss pages
    return total


@dataclass
class LocalContainer:
    """A container the runner started as a local process group, and how it ended."""

    name: str
    image: str
    proc: subprocess.Popen[bytes]
    started_at: str
    message_file: Path
    fallback_to_logs: bool = False
    memory_limit: int | None = None
    """Bytes; the container is OOMKilled past it."""
    exit_code: int | None = None
    reason: str = ""
    finished_at: str = ""
    oom_killed: bool = False

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def over_memory(self) -> bool:
        """Past its memory limit: killed as the OOM killer would (once)."""
        if self.memory_limit is None or self.oom_killed or self.proc.poll() is not None:
            return False
        if group_rss_bytes(self.proc.pid) <= self.memory_limit:
            return False
        self.oom_killed = True
        self.signal(signal.SIGKILL)
        return True

    def termination_message(self, log_file: Path) -> str:
        """What the container wrote to its termination log, else (FallbackToLogsOnError,
        after a failure) the end of its output, as the kubelet reports it."""
        text = ""
        with contextlib.suppress(OSError):
            text = self.message_file.read_text(errors="replace")
        if not text and self.exit_code != 0 and self.fallback_to_logs:
            with contextlib.suppress(OSError):
                text = "\n".join(log_file.read_text(errors="replace").splitlines()[-80:])
                text = text[-2048:]
        return text[:contract.TERMINATION_MESSAGE_LIMIT]

    def exited(self) -> int | None:
        """The exit code once the process has exited (128 + n for signal n), else None."""
        code = self.proc.poll()
        if code is None:
            return None
        return code if code >= 0 else 128 - code


def start_container(container: dict[str, Any], env: dict[str, str], workdir: Path,
                    log_file: Path, pod_name: str, *, home: Path | None = None,
                    state_dir: Path | None = None) -> LocalContainer | str:
    """Start one container's process; the reason as text when it cannot start.

    The process gets `env` and what the runner adds in place of an image, never the
    runner's own environment; its HOME is `home` and its working directory `workdir`
    (or its `workingDir`, unless that reaches into `state_dir`): see `sandbox`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    home = home or workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    message_file = workdir / "termination-log"
    env[contract.ENV_TERMINATION_LOG] = str(message_file)
    env.setdefault("HOSTNAME", pod_name)
    argv = [expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
    if not argv:
        return (f"container {container['name']}: the local runner needs an explicit command: "
                "it cannot read the image's entrypoint")
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    cwd = sandbox.working_dir(container.get("workingDir"), workdir, state_dir)
    with open(log_file, "ab") as out:
        try:
            proc = subprocess.Popen(argv, env=sandbox.process_env(env, home), cwd=cwd, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError as e:
            return f"cannot start {argv[0]}: {e.strerror}"
    limits = (container.get("resources") or {}).get("limits") or {}
    return LocalContainer(
        name=container["name"], image=container.get("image", ""), proc=proc,
        started_at=now(), message_file=message_file,
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        memory_limit=memory_bytes(limits.get("memory")))


@dataclass
class LocalPod:
    """A pod the runner started: its containers' processes and the files it writes."""

    uid: str
    namespace: str
    name: str
    containers: list[LocalContainer]
    started_at: str
    log_file: Path
    scraped: bool
    """Whether its target is registered with Prometheus (scrape.Targets)."""
    terminating: bool = False
    kill_at: float | None = None


@dataclass
class WaitingPod:
    """A pod whose containers cannot start yet: the reason it shows and when to try again."""

    pod: dict[str, Any]
    started_at: str
    reason: str
    retry_at: float | None
    """Monotonic time of the next change; None when only a new spec could help."""
