"""The Prometheus targets the local runner registers: the file-based stand-in for the
chart's Kubernetes service discovery.

Like the chart's scrape configuration, it keeps a trial pod only where it serves the
trial's metrics (`contract.serves_metrics`: rank 0 of a multi-worker trial, every
one-worker trial's pod), with the target labels taken from the pod (`podstatus`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune import contract
from kubetune.devcluster.podstatus import target_labels


def register_target(sd_dir: Path, pod: dict[str, Any], port: int | None) -> Path | None:
    """Write the pod's target file for Prometheus, atomically; None when it is not scraped."""
    meta = pod["metadata"]
    if port is None or not contract.serves_metrics(meta.get("labels"), meta.get("annotations")):
        return None
    sd_file = sd_dir / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}.json"
    tmp = sd_file.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"],
                                "labels": target_labels(pod)}]))
    tmp.rename(sd_file)
    return sd_file
