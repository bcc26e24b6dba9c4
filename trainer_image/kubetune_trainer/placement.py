"""Where this process sits in a torchrun group, read from the environment torchrun sets.

Kept free of torch, so that deciding between one process and a group costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """Global rank, group size and rank within the pod, as torchrun gives them to a worker."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Placement | None:
        """The placement torchrun gave this process; None when torchrun did not start it."""
        env = os.environ if environ is None else environ
        if "RANK" not in env or "WORLD_SIZE" not in env:
            return None
        placement = cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
        if not 0 <= placement.rank < placement.world_size:
            raise ValueError(f"RANK={placement.rank} is not in 0..WORLD_SIZE-1 "
                             f"(WORLD_SIZE={placement.world_size})")
        return placement

    @property
    def is_leader(self) -> bool:
        """Global rank 0: the process that reports, checkpoints and writes the result."""
        return self.rank == 0
