"""The Prometheus targets the local runner registers: the file-based stand-in for the
chart's Kubernetes service discovery.

Like the chart's scrape configuration, it keeps a trial pod only where it serves the
trial's metrics (`contract.serves_metrics`: rank 0 of a multi-worker trial, every
one-worker trial's pod), with the target labels taken from the pod (`podstatus`).

Every target is in one file, rewritten at most every `Targets.seconds` when something
changed, as Kubernetes service discovery sends Prometheus batched updates. Prometheus
reads every file of a file_sd directory again at each change in it, so a file per pod,
written and removed at each pod's start and end, made it read hundreds of files many
times a second; it applies discovered targets at most every 5 s in any case.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from kubetune import contract
from kubetune.devcluster.podstatus import target_labels

TARGETS_FILE = "targets.json"


def target_entry(pod: dict[str, Any], port: int | None) -> dict[str, Any] | None:
    """The pod's file_sd entry; None when it is not scraped."""
    meta = pod["metadata"]
    if port is None or not contract.serves_metrics(meta.get("labels"), meta.get("annotations")):
        return None
    return {"targets": [f"127.0.0.1:{port}"], "labels": target_labels(pod)}


class Targets:
    """The runner's scrape targets, by pod uid, in `sd_dir`/targets.json."""

    def __init__(self, sd_dir: Path, seconds: float = 0.25) -> None:
        self.path = sd_dir / TARGETS_FILE
        self.seconds = seconds
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self._changed = threading.Event()
        self._stopping = threading.Event()
        self.write()  # a restarted runner's pods are gone, and so are their targets

    def add(self, pod: dict[str, Any], port: int | None) -> bool:
        """Register the pod's target; False when it is not scraped."""
        entry = target_entry(pod, port)
        if entry is None:
            return False
        with self._lock:
            self._entries[pod["metadata"]["uid"]] = entry
        self._changed.set()
        return True

    def remove(self, uid: str) -> None:
        with self._lock:
            gone = self._entries.pop(uid, None) is not None
        if gone:
            self._changed.set()

    def write(self) -> None:
        """Write the file now, atomically (the temporary file is outside the watched dir)."""
        with self._lock:
            entries = list(self._entries.values())
        tmp = self.path.parent.parent / f".{self.path.parent.name}-{TARGETS_FILE}.tmp"
        tmp.write_text(json.dumps(entries))
        tmp.rename(self.path)

    def run(self) -> None:
        """Write the file after each change, at most every `seconds` (a daemon thread)."""
        while not self._stopping.is_set():
            self._changed.wait()
            self._changed.clear()
            self.write()
            self._stopping.wait(self.seconds)

    def stop(self) -> None:
        self._stopping.set()
        self._changed.set()
