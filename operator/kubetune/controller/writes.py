"""The writes of one reconcile tick that make or remove a trial's pods.

Each function is one step of a trial's chain (concurrent.py): apply.py
puts them in the order restart safety needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from kubetune.api import TuneExperimentSpec
from kubetune.controller import distributed, manifests
from kubetune.controller.gateway import Gateway, template_refused
from kubetune.controller.planner import Plan
from kubetune.controller.planner.actions import NewPod
from kubetune.controller.planner.groups import Groups


def delete(gw: Gateway, groups: Groups | None, namespace: str, pod: str, grace: int,
           plan: Plan) -> None:
    """Delete a pruned or stopped attempt: its pod, or its Job and every worker."""
    if not distributed.delete(gw, groups, namespace, pod, grace, plan):
        gw.delete_pod(namespace, pod, grace)


def create_trial(gw: Gateway, by_name: dict[str, dict[str, Any]],
                 trial_body: dict[str, Any]) -> None:
    """Create (or adopt) a new TuneTrial and keep its body for its pod's ownerReference."""
    created = gw.create_trial(trial_body)
    by_name[created["metadata"]["name"]] = created  # each chain sets its own trial's key


def create_pod(gw: Gateway, spec: TuneExperimentSpec, by_name: dict[str, dict[str, Any]],
               namespace: str, new_pod: NewPod, groups: Groups | None) -> None:
    """Create an attempt: its pod, or its Service and Job when it has several workers."""
    trial_body = by_name.get(new_pod.trial) or gw.get_trial(namespace, new_pod.trial)
    pod_body = trial_pod(spec, trial_body, new_pod.attempt, new_pod.params, new_pod.milestones,
                          start_checkpoint=new_pod.start_checkpoint,
                          checkpoint_segment=new_pod.checkpoint_segment)
    if groups is not None and distributed.create_attempt(gw, spec, trial_body, pod_body,
                                                         new_pod.params):
        return
    # The template itself is wrong: say so on the resource instead of retrying forever.
    with template_refused(f"the apiserver rejected trial pod {pod_body['metadata']['name']}"):
        gw.create_pod(pod_body)


def trial_pod(spec: TuneExperimentSpec, trial: Mapping[str, Any], attempt: int,
               params: Mapping[str, Any], milestones: Sequence[int], *,
               start_checkpoint: str = "", checkpoint_segment: int = 0) -> dict[str, Any]:
    """The pod of one attempt of `trial`, from the experiment's template."""
    return manifests.build_pod(
        template=spec.trial_template.pod_template(), trial=trial, attempt=attempt, params=params,
        objective_metric=spec.objective.metric, milestones=milestones,
        metrics_port=spec.metrics_port,
        storage_claim=spec.storage.claim_name if spec.storage else None,
        start_checkpoint=start_checkpoint, checkpoint_segment=checkpoint_segment,
        keep_checkpoint_steps=milestones if spec.scheduler.type == "pbt" else ())


def dry_run_first_pod(gw: Gateway, body: kopf.Body, spec: TuneExperimentSpec, plan: Plan) -> None:
    """Have the apiserver judge the first trial's pod (dry run, strict fields).

    The CRD keeps the template's PodSpec as written, so a typo (`resorces`) or a pod the
    namespace's admission refuses would otherwise surface only as trials that never run.
    """
    first = plan.new_trials[0]
    pod = next((p for p in plan.new_pods if p.index == first.index), None)
    trial = manifests.build_trial(body, first.index, first.params)
    trial["metadata"]["uid"] = body["metadata"]["uid"]  # a stand-in: the owner is dropped below
    pod_body = trial_pod(spec, trial, 1, first.params, pod.milestones if pod else [])
    pod_body["metadata"].pop("ownerReferences", None)  # its TuneTrial does not exist yet
    with template_refused("the apiserver refuses the trial pod built from it "
                          f"(dry run of {pod_body['metadata']['name']})"):
        gw.dry_run_pod(pod_body)
