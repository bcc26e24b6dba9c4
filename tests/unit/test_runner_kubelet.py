"""The local runner's imitation of the kubelet: image errors, memory quantities, pod phases."""

from __future__ import annotations

import pytest

from kubetune.controller.planner import PodView
from kubetune.devcluster.containers import image_problem, memory_bytes
from kubetune.devcluster.podstatus import container_entry, containers_status, waiting_status


@pytest.mark.parametrize(("image", "reason"), [
    ("registry.kubetune.invalid/trainer:1", "ErrImagePull"),
    ("localhost.invalid:5000/a/b", "ErrImagePull"),
    ("Trainer:Latest", "InvalidImageName"),
    ("trainer image", "InvalidImageName"),
])
def test_images_that_cannot_be_had_get_the_kubelets_waiting_reason(image: str, reason: str) -> None:
    problem = image_problem(image)
    assert problem is not None and problem[0] == reason


@pytest.mark.parametrize("image", ["kubetune/scripted:test", "python:3.11-slim",
                                   "ghcr.io/org/trainer@sha256:" + "a" * 64, "busybox"])
def test_ordinary_images_start(image: str) -> None:
    assert image_problem(image) is None


@pytest.mark.parametrize(("quantity", "expected"), [
    ("512Mi", 512 * 2**20), ("1G", 10**9), ("1048576", 2**20), ("1.5Gi", int(1.5 * 2**30)),
    (None, None), ("lots", None)])
def test_memory_quantities_are_read_in_bytes(quantity: object, expected: int | None) -> None:
    assert memory_bytes(quantity) == expected


def test_a_sidecar_keeps_the_pod_running_after_the_main_container_exits() -> None:
    main = container_entry("train", "x", 1, {"terminated": {"exitCode": 0, "reason": "Completed"}})
    sidecar = container_entry("agent", "y", 2, {"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    status = containers_status([main, sidecar], "2026-01-01T00:00:00Z")
    assert status["phase"] == "Running"
    assert [c["name"] for c in status["containerStatuses"]] == ["agent", "train"]
    body = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "train"}, {"name": "agent"}]},
            "status": status}
    view = PodView.from_body(body)
    assert view.main_terminated and view.exit_code == 0 and not view.finished and view.done


@pytest.mark.parametrize(("codes", "phase"), [((0, 0), "Succeeded"), ((0, 1), "Failed")])
def test_a_pod_ends_when_every_container_has_exited(codes: tuple[int, int], phase: str) -> None:
    entries = [container_entry(f"c{i}", "x", i, {"terminated": {"exitCode": c}})
               for i, c in enumerate(codes)]
    assert containers_status(entries, "2026-01-01T00:00:00Z")["phase"] == phase


def test_a_pod_waiting_on_its_image_is_pending_with_the_reason_on_that_container() -> None:
    pod = {"metadata": {"name": "p"},
           "spec": {"containers": [{"name": "train", "image": "a.invalid/x"}]}}
    status = waiting_status(pod, "train", "ImagePullBackOff", "Back-off", "2026-01-01T00:00:00Z")
    assert status["phase"] == "Pending" and status["startTime"] == "2026-01-01T00:00:00Z"
    view = PodView.from_body({**pod, "status": status})
    assert view.waiting_reason == "ImagePullBackOff" and view.image == "a.invalid/x"
