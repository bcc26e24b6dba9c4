"""Where the control plane's binaries come from.

Users who already have them (an envtest assets directory with kube-apiserver and
etcd, plus kwok and helm) point KUBETUNE_BIN_DIR at them; otherwise the bundled
build script compiles them from the Go module proxy once and caches them outside
the checkout, keyed by every version involved.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BUILD_SCRIPT = Path(__file__).with_name("build-binaries.sh")
REQUIRED = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok")


class BinariesMissing(RuntimeError):
    """The control plane cannot start because a binary is missing."""


@dataclass(frozen=True)
class Binaries:
    directory: Path

    def path(self, name: str) -> str:
        return str(self.directory / name)

    @property
    def helm(self) -> str | None:
        candidate = self.directory / "helm"
        if candidate.exists():
            return str(candidate)
        return shutil.which("helm")

    @property
    def prometheus(self) -> str:
        found = shutil.which("prometheus")
        if found is None:
            raise BinariesMissing(
                "prometheus is not installed: run `sudo apt-get install prometheus` "
                "(or `make system-deps`)"
            )
        return found


def _complete(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in REQUIRED)


def find_binaries(build: bool = True) -> Binaries:
    """Return the binary directory, building it from the Go module proxy if allowed."""
    for var in ("KUBETUNE_BIN_DIR", "KUBEBUILDER_ASSETS"):
        value = os.environ.get(var)
        if value and _complete(Path(value)):
            return Binaries(Path(value))
        if value and var == "KUBETUNE_BIN_DIR":
            missing = [n for n in REQUIRED if not os.access(Path(value) / n, os.X_OK)]
            raise BinariesMissing(f"{var}={value} lacks {', '.join(missing)}")
    if not build:
        raise BinariesMissing("control plane binaries not built: run `make binaries`")
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=False, stdout=subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        raise BinariesMissing(f"building the control plane failed (exit {result.returncode})")
    return Binaries(Path(result.stdout.strip().splitlines()[-1]))
