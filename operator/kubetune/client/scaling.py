"""Ray Train's `ScalingConfig`, for trials of several workers: `Tuner(scaling_config=...)`.

    import kubetune
    from kubetune import tune

    num_workers = tune.choice([2, 4])
    tuner = kubetune.Tuner(
        "registry.example.com/kubetune-trainer:0.1.0",
        command=["python", "-m", "torch.distributed.run", "-m", "kubetune_trainer"],
        param_space={"num_workers": num_workers,
                     "train_loop_config": {"lr": tune.grid_search([1e-3, 3e-4])}},
        scaling_config=kubetune.ScalingConfig(num_workers=num_workers, use_gpu=True),
        tune_config=kubetune.TuneConfig(metric="accuracy", mode="max", max_concurrent_trials=2),
    )

Ray's arguments and defaults (ray/air/config.py): `num_workers=1`, `use_gpu=False`,
`resources_per_worker=None` (then `{"CPU": 1}`, or `{"GPU": 1}` with `use_gpu`),
`trainer_resources`, `placement_strategy="PACK"`, `accelerator_type`. Here a worker
is a pod of the trial's Indexed Job (`spec.workers`), so:

- `num_workers` is `spec.workers.count`, or, when it is a domain, the search-space
  parameter that holds it (`spec.workers.parameter`): the one in `param_space` that is
  this very domain (or the only one equal to it), else it is added to the space as
  `scaling_config.num_workers`, where Ray's Tuner puts a Trainer's scaling config;
- `resources_per_worker` (Ray's keys: `CPU`, `GPU`, `memory` in bytes, or any
  Kubernetes resource name) becomes the pod's resources: `cpu` and `memory` as
  requests (Ray reserves them, it does not cap them), `GPU` as `nvidia.com/gpu` and
  every other resource as limits (Kubernetes' rule for extended resources);
- Ray's own `ray.train.ScalingConfig` (or `ray.air.config`'s), and a `ray.tune` domain
  for `num_workers`, are read the same way, so a ported script may keep its imports;
- `trainer_resources` is refused when it asks for anything: there is no coordinator
  process, rank 0's pod does its work; `placement_strategy` and `accelerator_type`
  are refused unless left at Ray's defaults (use the pod template's affinity and
  nodeSelector, which say the same in Kubernetes' words).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from kubetune.client import domains, ray_compat
from kubetune.client.domains import Domain

#: Ray's resource keys and the Kubernetes names they stand for.
_RAY_RESOURCES = {"CPU": "cpu", "GPU": "nvidia.com/gpu", "memory": "memory"}
#: Kubernetes resources a pod requests (the rest go to limits).
_REQUESTED = ("cpu", "memory")
#: Where the domain goes when param_space does not hold it: Ray's key for a Trainer's
#: ScalingConfig in a Tuner's param_space.
SPACE_KEY = "scaling_config"


@dataclass
class ScalingConfig:
    """Ray Train's ScalingConfig: how many workers (pods) a trial runs and what each gets."""

    trainer_resources: dict[str, Any] | None = None
    num_workers: int | Domain = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, Any] | None = None
    placement_strategy: str = "PACK"
    accelerator_type: str | None = None
    _given: Any = field(default=None, init=False, repr=False, compare=False)
    """The num_workers object as given (a Ray domain is looked up in param_space as itself)."""

    def __post_init__(self) -> None:
        self._given = self.num_workers
        if ray_compat.from_ray(self.num_workers):
            self.num_workers = ray_compat.domain("ScalingConfig(num_workers=...)", self.num_workers)
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int | Domain):
            raise ValueError(f"ScalingConfig(num_workers={self.num_workers!r}) must be a whole "
                             "number or a tune domain (tune.choice([2, 4]))")
        if isinstance(self.num_workers, int) and self.num_workers < 1:
            raise ValueError(f"ScalingConfig(num_workers={self.num_workers}) must be >= 1")
        # Ray's own two checks, in Ray's words.
        if self.resources_per_worker:
            if not self.use_gpu and self.num_gpus_per_worker > 0:
                raise ValueError(
                    "`use_gpu` is False but `GPU` was found in `resources_per_worker`. Either "
                    "set `use_gpu` to True or remove `GPU` from `resources_per_worker.")
            if self.use_gpu and self.num_gpus_per_worker == 0:
                raise ValueError(
                    "`use_gpu` is True but `GPU` is set to 0 in `resources_per_worker`. Either "
                    "set `use_gpu` to False or request a positive number of `GPU` in "
                    "`resources_per_worker.")
        if any(v for v in (self.trainer_resources or {}).values()):
            raise ValueError(
                f"ScalingConfig(trainer_resources={self.trainer_resources!r}): a kubetune "
                "trial has no coordinator process (rank 0's pod runs it); give the workers' "
                "resources in resources_per_worker")
        if self.placement_strategy != "PACK" or self.accelerator_type is not None:
            raise ValueError(
                "ScalingConfig(placement_strategy=..., accelerator_type=...): a worker is a pod "
                "here, placed by the Kubernetes scheduler; say where it goes with the pod "
                "template's nodeSelector or affinity")

    @property
    def _resources_per_worker_not_none(self) -> dict[str, Any]:
        """Ray's resolution of the per-worker resources (ray/air/config.py), as Ray does it."""
        if self.resources_per_worker is None:
            resources = {"GPU": 1} if self.use_gpu else {"CPU": 1}
        else:
            resources = {k: v for k, v in self.resources_per_worker.items() if v != 0}
        if self.use_gpu:
            resources.setdefault("GPU", 1)
        return resources

    @property
    def num_cpus_per_worker(self) -> float:
        return float(self._resources_per_worker_not_none.get("CPU", 0))

    @property
    def num_gpus_per_worker(self) -> float:
        return float(self._resources_per_worker_not_none.get("GPU", 0))

    def pod_resources(self) -> dict[str, dict[str, str]]:
        """Each worker pod's main container `resources` (requests and limits)."""
        out: dict[str, dict[str, str]] = {}
        for key, value in self._resources_per_worker_not_none.items():
            name = _RAY_RESOURCES.get(key, key)
            if name == "nvidia.com/gpu" and float(value) != int(float(value)):
                raise ValueError(f"ScalingConfig: GPU={value} per worker: a pod gets whole "
                                 "GPUs (nvidia.com/gpu is an integer resource)")
            kind = "requests" if name in _REQUESTED else "limits"
            out.setdefault(kind, {})[name] = _quantity(value)
        return out

    def workers_spec(self, param_space: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """spec.workers, and the dotted parameter the domain must be added as (None if there)."""
        if isinstance(self.num_workers, int):
            return {"count": self.num_workers}, None
        found = _paths_of(param_space, self.num_workers, self._given)
        if len(found) == 1:
            return {"parameter": found[0]}, None
        path = f"{SPACE_KEY}.num_workers"
        if _lookup(param_space, path) is not None:
            raise ValueError(
                f"ScalingConfig(num_workers={self.num_workers}): param_space has "
                f"{path} already, not this domain; pass the same domain object to both")
        return {"parameter": path}, path


def as_scaling_config(obj: Any) -> ScalingConfig:
    """kubetune's ScalingConfig for ours or for Ray Train's own (same fields, same meaning)."""
    if isinstance(obj, ScalingConfig):
        return obj
    if ray_compat.from_ray(obj) and type(obj).__name__ == "ScalingConfig":
        return ScalingConfig(**{f.name: getattr(obj, f.name) for f in fields(ScalingConfig)
                                if f.init})
    raise TypeError(f"scaling_config must be a kubetune.ScalingConfig (Ray Train's arguments), "
                    f"not {type(obj).__name__}")


def apply_scaling_config(spec: dict[str, Any], scaling: Any,
                         param_space: Mapping[str, Any]) -> None:
    """Write `scaling` into a TuneExperiment spec the Tuner built from `param_space`."""
    scaling = as_scaling_config(scaling)
    workers, added = scaling.workers_spec(param_space)
    if added is not None:
        space = {k: v for k, v in param_space.items()}
        nested = dict(space.get(SPACE_KEY) or {})
        nested["num_workers"] = scaling.num_workers
        space[SPACE_KEY] = nested
        spec["searchSpace"] = domains.search_space(space)
    spec["workers"] = workers
    main = spec["trialTemplate"]["spec"]["containers"][0]
    resources = main.setdefault("resources", {})
    for kind, values in scaling.pod_resources().items():
        current = resources.setdefault(kind, {})
        for name, value in values.items():
            given = current.get(name, (resources.get("limits") or {}).get(name))
            if given is not None and str(given) != value:
                if scaling.resources_per_worker is None:
                    continue  # Ray's default does not override what the template says
                raise ValueError(
                    f"ScalingConfig gives each worker {name}={value}, but the trainable's "
                    f"resources say {name}={given}; give it in one place")
            current[name] = value


def _quantity(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _paths_of(space: Mapping[str, Any], domain: Domain, given: Any) -> list[str]:
    """Dotted paths of `domain` in a param_space: the same object (as given, or converted
    from Ray's), else the only equal one."""
    same: list[str] = []
    equal: list[str] = []

    def walk(node: Mapping[str, Any], at: str) -> None:
        for key, value in node.items():
            path = f"{at}{key}"
            if value is domain or value is given:
                same.append(path)
            elif isinstance(value, Domain) and value == domain:
                equal.append(path)
            elif isinstance(value, Mapping):
                walk(value, path + ".")

    walk(space, "")
    return same if same else equal if len(equal) == 1 else []


def _lookup(space: Mapping[str, Any], path: str) -> Any:
    node: Any = space
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
