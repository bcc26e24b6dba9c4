"""spec.storage: where an experiment's trials keep their checkpoints.

Without it a trial's checkpoints live in the pod's own filesystem (under
KUBETUNE_CHECKPOINT_ROOT, /tmp by default), so a new attempt on another node
starts from scratch. With it the operator mounts the named PersistentVolumeClaim
in every trial pod's main container at STORAGE_MOUNT_PATH and points
KUBETUNE_CHECKPOINT_DIR there: a retry resumes wherever it runs, and the trials
can read each other's checkpoints. The claim must exist in the experiment's
namespace; ReadWriteMany when trials run on several nodes.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kubetune.api.common import SpecModel
from kubetune.contract import STORAGE_MOUNT_PATH, STORAGE_VOLUME

_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class ClaimReference(SpecModel):
    """A PersistentVolumeClaim in the experiment's namespace."""

    claim_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=_DNS_SUBDOMAIN,
        description="Name of the PersistentVolumeClaim, as in a pod's "
        "volumes[].persistentVolumeClaim.claimName.",
    )


class StorageSpec(SpecModel):
    """Checkpoint storage shared by all the trials of an experiment."""

    persistent_volume_claim: ClaimReference = Field(
        description="The claim mounted in every trial pod's main container at "
        f"{STORAGE_MOUNT_PATH}; each trial's checkpoints go to "
        f"{STORAGE_MOUNT_PATH}/<namespace>/<experiment>-<uid>/<trial> "
        "(KUBETUNE_CHECKPOINT_DIR), where kubetune.trial.save_checkpoint writes and "
        "get_checkpoint reads, and so do the trial's later attempts. Use a ReadWriteMany "
        "claim when trials may run on several nodes.",
    )

    @property
    def claim_name(self) -> str:
        return self.persistent_volume_claim.claim_name


def storage_template_problem(template: dict[str, Any]) -> str | None:
    """Why a trial template cannot take spec.storage's volume and mount, or None."""
    spec = template.get("spec") or {}
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict) and volume.get("name") == STORAGE_VOLUME:
            return (f"trialTemplate.spec.volumes: the name {STORAGE_VOLUME} is the "
                    "volume the operator adds for spec.storage; rename yours")
    main = (spec.get("containers") or [{}])[0]
    for mount in main.get("volumeMounts") or []:
        if isinstance(mount, dict) and mount.get("mountPath") == STORAGE_MOUNT_PATH:
            return (f"trialTemplate.spec.containers[0].volumeMounts: {STORAGE_MOUNT_PATH} "
                    "is where the operator mounts spec.storage; mount yours elsewhere")
    return None


__all__ = ["ClaimReference", "StorageSpec", "storage_template_problem"]
