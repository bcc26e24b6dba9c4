"""The trial template: the PodTemplateSpec every trial of an experiment runs.

Any PodSpec field is kept as written; the operator adds the trial's
hyperparameters and its own env variables, so the template may not set those
(a KUBETUNE_CONFIG of the user's would replace the one the trial was drawn with).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from kubetune.api.common import SpecModel
from kubetune.api.limits import (
    POD_SPEC_FIELDS,
    container_schema,
    kept_fields,
    owned_env_problem,
)


def _declare_pod_spec_fields(schema: dict[str, Any], _: type) -> None:
    properties = schema.setdefault("properties", {})
    if isinstance(properties, dict):
        properties.update(kept_fields("PodSpec", POD_SPEC_FIELDS))


class TrialPodSpec(SpecModel):
    """The trial pod's spec: any field of a PodSpec; containers is required."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_declare_pod_spec_fields)

    containers: list[dict[str, Any]] = Field(
        min_length=1,
        description="The pod's containers, as in any PodSpec. Hyperparameters reach them as "
        "env KUBETUNE_CONFIG (JSON) and KUBETUNE_PARAM_<NAME>, and ${params.NAME} in args "
        "is replaced. Ask for GPUs here (resources.limits nvidia.com/gpu).",
        json_schema_extra={"items": container_schema()},
    )

    @field_validator("containers")
    @classmethod
    def _no_operator_env(cls, containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, container in enumerate(containers):
            env = container.get("env") or []
            names = [str(e.get("name", "")) for e in env if isinstance(e, dict)]
            problem = owned_env_problem(names)
            if problem:
                raise ValueError(f"containers[{i}]: {problem}")
        return containers


class TrialTemplate(SpecModel):
    """A PodTemplateSpec: the pod every trial runs, with its hyperparameters added."""

    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Labels and annotations for trial pods, as in any pod template.",
        json_schema_extra={"properties": kept_fields("ObjectMeta", ("labels", "annotations"))},
    )
    spec: TrialPodSpec = Field(description="The trial pod's PodSpec.")

    def pod_template(self) -> dict[str, Any]:
        """The template as the plain PodTemplateSpec dict the user wrote (a fresh copy)."""
        return copy.deepcopy(self.model_dump(by_alias=True, exclude_none=True, mode="json"))


__all__ = ["TrialPodSpec", "TrialTemplate"]
