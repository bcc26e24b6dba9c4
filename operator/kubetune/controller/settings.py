"""Operator settings, read once from the environment / command line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OperatorSettings:
    prometheus_url: str = "http://prometheus:9090"
    tick_seconds: float = 2.0
    metrics_port: int = 8080
    health_port: int = 8081
    namespaces: tuple[str, ...] = field(default_factory=tuple)  # empty: cluster-wide

    @classmethod
    def from_env(cls) -> OperatorSettings:
        env = os.environ
        namespaces = tuple(n for n in env.get("KUBETUNE_NAMESPACES", "").split(",") if n)
        return cls(
            prometheus_url=env.get("KUBETUNE_PROMETHEUS_URL", cls.prometheus_url),
            tick_seconds=float(env.get("KUBETUNE_TICK_SECONDS", cls.tick_seconds)),
            metrics_port=int(env.get("KUBETUNE_METRICS_PORT", cls.metrics_port)),
            health_port=int(env.get("KUBETUNE_HEALTH_PORT", cls.health_port)),
            namespaces=namespaces,
        )
