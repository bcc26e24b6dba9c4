"""What a TuneExperiment may ask for, so that everything it asks for works.

Each bound here protects something that breaks later, far from the manifest:
a label value longer than 63 characters, a trial index past int64, an
environment string over Linux's 128 KiB, a name PromQL or the environment
cannot carry, an env variable the operator owns, a spec edited under a running
search. The same numbers serve the models (Python validation, what the operator
and the Tuner check) and the CEL rules published in the CRD (what the apiserver
refuses at apply time), so both refuse the same things.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from pydantic import JsonValue

import kubetune.contract as contract

MAX_EXPERIMENT_NAME: Final = 50
"""An experiment's name: trials are `<name>-<index>` (index < MAX_TRIALS, 5 digits) and
their pods `<trial>-<attempt>`, and both names are label values (at most 63 characters)."""

LABEL_VALUE_LIMIT: Final = 63

MAX_TRIALS: Final = 100_000
"""Trials in one experiment: numSamples times the number of grid points."""

MAX_CONCURRENT_TRIALS: Final = 1000
"""Trials running at once (each is a pod the operator lists every tick)."""

MAX_CONFIG_BYTES: Final = 64 * 1024
"""The largest trial config (KUBETUNE_CONFIG's JSON). Linux refuses to start a process one
of whose environment strings passes 128 KiB, and the config reaches the container twice:
as KUBETUNE_CONFIG and again, flattened, as KUBETUNE_PARAM_* variables."""

MAX_NAME_LENGTH: Final = 128
"""Parameter, metric and timeAttr names."""

PARAMETER_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_-]*$"
"""A parameter name: it becomes the suffix of an env variable (KUBETUNE_PARAM_<NAME>) and
a ${params.NAME} reference in args."""

METRIC_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_.:/-]*$"
"""A metric name: the `metric` label of a trial's series, a key of its termination message
and of kubetune.trial.report()'s metrics; no spaces, quotes or other surprises."""

OPERATOR_ENV: Final = (
    contract.ENV_CONFIG,
    contract.ENV_EXPERIMENT,
    contract.ENV_TRIAL,
    contract.ENV_ATTEMPT,
    contract.ENV_METRIC,
    contract.ENV_MILESTONES,
    contract.ENV_METRICS_PORT,
    contract.ENV_CHECKPOINT_DIR,
    contract.ENV_START_CHECKPOINT,
    contract.ENV_KEEP_CHECKPOINT_STEPS,
)
"""Env variables the operator sets in every trial pod; the template may not set them."""

OPERATOR_ENV_PREFIX: Final = contract.ENV_PARAM_PREFIX

IMMUTABLE_FIELDS: Final = ("objective", "searchSpace", "searchAlgorithm", "scheduler",
                           "trialTemplate")
"""Spec fields fixed at creation: trials already run, their rung records and the
scheduler's cutoffs all depend on them. The limits (numSamples, maxConcurrentTrials,
maxFailedTrials, trialRetries, ...) stay editable."""

_OWNED_LIST = ", ".join(OPERATOR_ENV) + f" and {OPERATOR_ENV_PREFIX}*"
_USER_ENV = ", ".join((contract.ENV_CHECKPOINT_ROOT, contract.ENV_LINGER_SECONDS,
                       contract.ENV_STOP_GRACE_SECONDS))


# -- the checks the models run --------------------------------------------------------------
def owned_env_problem(names: Iterable[str]) -> str | None:
    """Why these container env names cannot be in a trial template, or None."""
    owned = [n for n in names if n in OPERATOR_ENV or n.startswith(OPERATOR_ENV_PREFIX)]
    if not owned:
        return None
    return (f"env {', '.join(owned)} is set by the operator for each trial; remove it from "
            f"the template (the operator sets {_OWNED_LIST}; {_USER_ENV} are yours to set)")


def name_problem(kind: str, name: str, pattern: str, why: str) -> str | None:
    """Why `name` cannot be a parameter/metric name, or None."""
    if len(name) > MAX_NAME_LENGTH:
        return f"{kind} {name[:40]!r}... is {len(name)} characters; at most {MAX_NAME_LENGTH}"
    if not re.fullmatch(pattern, name):
        return f"{kind} {name!r} must match {pattern} ({why})"
    return None


METRIC_WHY: Final = ("it is the metric label of the trial's Prometheus series, a key of its "
                     "termination message and a name passed to kubetune.trial.report()")
PARAMETER_WHY: Final = ("start with a letter or _, then letters, digits, _ and -; it becomes "
                        "the env variable KUBETUNE_PARAM_<NAME>")


def trials_problem(num_samples: int, grid_points: int) -> str | None:
    """Why numSamples x grid points is too many trials, or None."""
    total = num_samples * grid_points
    if total <= MAX_TRIALS:
        return None
    return (f"numSamples={num_samples} x {grid_points} grid points = {total} trials; at most "
            f"{MAX_TRIALS} trials are allowed: use fewer grid values or a smaller numSamples")


def config_problem(worst_bytes: int) -> str | None:
    """Why a config of up to `worst_bytes` of JSON cannot reach a trial, or None."""
    if worst_bytes <= MAX_CONFIG_BYTES:
        return None
    return (f"a trial's config can reach {worst_bytes} bytes of JSON; at most "
            f"{MAX_CONFIG_BYTES} fit in the trial's environment (KUBETUNE_CONFIG and the "
            "KUBETUNE_PARAM_* variables; Linux caps one at 128 KiB): pass large values "
            "another way (a ConfigMap, a file in the image) and keep only a key in the space")


# -- the CEL rules the CRD publishes ----------------------------------------------------------
def _cel_string_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def name_length_rule() -> dict[str, JsonValue]:
    """At the resource's root: the name must leave room for `-<index>-<attempt>`."""
    return {
        "rule": f"size(self.metadata.name) <= {MAX_EXPERIMENT_NAME}",
        "message": f"metadata.name must be at most {MAX_EXPERIMENT_NAME} characters: trials are "
        f"named <experiment>-<index> and their pods <trial>-<attempt>, and both names are "
        f"label values, which Kubernetes caps at {LABEL_VALUE_LIMIT} characters",
        "fieldPath": ".metadata.name",
        "reason": "FieldValueInvalid",
    }


def immutable_rules() -> list[JsonValue]:
    """On the spec: transition rules that keep the search's definition fixed."""
    return [
        {
            "rule": f"self.{field} == oldSelf.{field}",
            "message": f"spec.{field} cannot change after the experiment is created (its trials "
            "and the scheduler's rung records were made with the old one); create a new "
            "experiment (another name) for the new one. The limits numSamples, "
            "maxConcurrentTrials, maxFailedTrials and trialRetries can be edited.",
            "fieldPath": f".{field}",
            "reason": "FieldValueForbidden",
        }
        for field in IMMUTABLE_FIELDS
    ]


def env_item_rule() -> dict[str, JsonValue]:
    """On each env entry of a trial container: not one of the operator's variables."""
    owned = _cel_string_list(OPERATOR_ENV)
    return {
        "rule": f"!(self.name in {owned}) && !self.name.startsWith('{OPERATOR_ENV_PREFIX}')",
        "messageExpression": f"'env ' + self.name + ' is set by the operator for each trial; "
        f"remove it from the template (the operator sets {_OWNED_LIST}; {_USER_ENV} are yours "
        "to set)'",
        "fieldPath": ".name",
        "reason": "FieldValueForbidden",
    }


def parameter_names_rule() -> dict[str, JsonValue]:
    """On searchSpace: each top-level parameter name is a valid env suffix."""
    return {
        "rule": f"self.all(k, size(k) <= {MAX_NAME_LENGTH} && "
        f"k.matches('{PARAMETER_NAME_PATTERN}'))",
        "message": f"searchSpace parameter names must match {PARAMETER_NAME_PATTERN} and be at "
        f"most {MAX_NAME_LENGTH} characters ({PARAMETER_WHY})",
    }


def metric_name_rule(field: str) -> dict[str, JsonValue]:
    """On a metric-name string field: the pattern, with the reason in the message."""
    return {
        "rule": f"self.matches('{METRIC_NAME_PATTERN}')",
        "message": f"{field} must match {METRIC_NAME_PATTERN}, such as accuracy, val_loss or "
        f"ptl/val_loss ({METRIC_WHY})",
    }


POD_SPEC_FIELDS: Final = (
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "dnsConfig",
    "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC",
    "hostNetwork", "hostPID", "hostUsers", "hostname", "hostnameOverride", "imagePullSecrets",
    "initContainers", "nodeName", "nodeSelector", "os", "overhead", "preemptionPolicy",
    "priority", "priorityClassName", "readinessGates", "resourceClaims", "resources",
    "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates", "securityContext",
    "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace",
    "subdomain", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints",
    "volumes",
)
"""PodSpec fields besides containers, declared so the immutability rule compares them by name."""

CONTAINER_FIELDS: Final = (
    "args", "command", "envFrom", "image", "imagePullPolicy", "lifecycle", "livenessProbe",
    "ports", "readinessProbe", "resizePolicy", "resources", "restartPolicy", "securityContext",
    "startupProbe", "stdin", "stdinOnce", "terminationMessagePath", "terminationMessagePolicy",
    "tty", "volumeDevices", "volumeMounts", "workingDir",
)
"""Container fields besides name and env."""


def kept_fields(kind: str, names: Iterable[str]) -> dict[str, Any]:
    """Declared, untyped properties: kept as written, and compared whole by `==`.

    The apiserver compares an object's declared properties by name but its undeclared ones
    only where both sides have them, so without these an edit that swaps one field for
    another (command for args) would pass the immutability rule.
    """
    return {
        name: {"description": f"{kind}.{name}, as in any pod; kept as written.",
               "x-kubernetes-preserve-unknown-fields": True}
        for name in names
    }


def container_schema() -> dict[str, Any]:
    """A trial container: any Container field; its env names are checked (CEL sees only
    declared fields, so name and env are declared, the rest is kept as written)."""
    return {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            **kept_fields("Container", CONTAINER_FIELDS),
            "name": {"type": "string", "description": "The container's name."},
            "env": {
                "type": "array",
                "description": "Env variables, as in any container. The operator sets "
                f"{_OWNED_LIST} itself; they may not be set here.",
                "maxItems": 1024,
                "items": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 1024,
                                 "description": "The variable's name."},
                    },
                    "x-kubernetes-validations": [env_item_rule()],
                },
            },
        },
    }


__all__ = [
    "CONTAINER_FIELDS",
    "IMMUTABLE_FIELDS",
    "MAX_CONCURRENT_TRIALS",
    "MAX_CONFIG_BYTES",
    "MAX_EXPERIMENT_NAME",
    "MAX_NAME_LENGTH",
    "MAX_TRIALS",
    "METRIC_NAME_PATTERN",
    "OPERATOR_ENV",
    "PARAMETER_NAME_PATTERN",
    "POD_SPEC_FIELDS",
    "config_problem",
    "container_schema",
    "env_item_rule",
    "immutable_rules",
    "kept_fields",
    "metric_name_rule",
    "name_length_rule",
    "name_problem",
    "owned_env_problem",
    "parameter_names_rule",
    "trials_problem",
]
