"""Follow a kind's changes from a test without losing any between watch requests.

A watch request without a resourceVersion starts "now": whatever changed since the
previous request ended (an object deleted in between, typically) is never delivered.
`follow` lists once, then resumes each watch request from the last resourceVersion it
saw, as an informer does; when the apiserver can no longer resume (410 Gone) it lists
again and reports what disappeared meanwhile as DELETED.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException


def _meta(obj: Any) -> tuple[str, str | None]:
    if isinstance(obj, dict):
        meta = obj.get("metadata") or {}
        return meta.get("name", ""), meta.get("resourceVersion")
    return obj.metadata.name, obj.metadata.resource_version


def _listing(result: Any) -> tuple[list[Any], str]:
    if isinstance(result, dict):
        return list(result.get("items") or []), result["metadata"]["resourceVersion"]
    return list(result.items or []), result.metadata.resource_version


def follow(list_fn: Callable[..., Any], *args: Any, stop: threading.Event,
           poll_seconds: int = 2, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every ADDED/MODIFIED/DELETED event of what `list_fn(*args, **kwargs)` lists, until
    `stop` is set (checked at least every `poll_seconds`). The first events are an ADDED
    for each object listed at the start."""
    known: dict[str, Any] = {}
    while not stop.is_set():
        items, version = _listing(list_fn(*args, **kwargs))
        listed = {_meta(o)[0]: o for o in items}
        for name in sorted(set(known) - set(listed)):
            yield {"type": "DELETED", "object": known.pop(name)}
        for name, obj in listed.items():
            known[name] = obj
            yield {"type": "ADDED", "object": obj}
        w = watch.Watch()
        try:
            while not stop.is_set():
                for event in w.stream(list_fn, *args, resource_version=version,
                                      timeout_seconds=poll_seconds, **kwargs):
                    name, seen = _meta(event["object"])
                    if event["type"] == "BOOKMARK":
                        version = seen or version
                        continue
                    if event["type"] == "DELETED":
                        known.pop(name, None)
                    else:
                        known[name] = event["object"]
                    version = seen or version
                    yield event
        except ApiException as e:
            if e.status != 410:
                raise
