"""Function trainables: `kubetune.Tuner(train_fn, ...)` ships a Python function to the trials.

    def train_fn(config):
        for epoch in range(10):
            ...
            tune.report({"accuracy": acc})

    kubetune.Tuner(train_fn, image="kubetune-trainer:0.1.0", param_space=..., ...).fit()

How the function travels. `ship_function()` decides:

1. refused, with the reason, at `fit()` / `to_manifest()`: a lambda, a class or other
   callable that is not a plain `def` function, a coroutine or generator function, one
   that cannot take the config dict as its one argument, one whose source is not
   available and that is defined in `__main__` (an interactive session), and one that
   neither stands alone as source nor pickles (it closes over a lock, a socket, ...);
2. its source, when it stands alone (`kubetune.client.function_source` gives the rule:
   the function with the module's imports and the module-level definitions it uses);
3. else a cloudpickle of it, by value (its module's code travels with it; other modules
   are imported in the image), when its source exists but does not stand alone (a
   closure, an object made at module level). The image needs cloudpickle and the
   client's Python minor version; the launcher says so when it has neither.

The shipment is a ConfigMap `<experiment>-function` that the TuneExperiment owns
(created before the experiment, so no trial pod waits for it, then given the
experiment as owner, so it goes with it; a submit that stopped in between leaves it
unowned and the next `fit()` adopts it). Each trial pod mounts it at
/var/run/kubetune/function and runs `python -m kubetune.trial.launch` in `image`
(default: the reference trainer image; any image with kubetune installed and the
function's imports works). What runs is on the experiment: `kubectl get tx NAME -o yaml`
shows the launcher command, the ConfigMap volume, the `kubetune.io/function` annotation
(name, format, sha256) and, under `kubetune.io/function-source`, the source.

KUBETUNE_WORKING_DIR, set in `Tuner(env=...)` or in the environment of the process that
calls `fit()`, is the directory the function runs in (else the image's working directory).

Used on the user's side; the ConfigMap is written with the caller's credentials.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from kubetune.api import GROUP, VERSION
from kubetune.client.errors import TuneError
from kubetune.client.function_source import NotStandalone, function_source, standalone_source
from kubetune.contract import EXPERIMENT_LABEL

if TYPE_CHECKING:
    from kubetune.client.experiments import ExperimentClient

#: The image a function runs in when `Tuner(image=...)` is not given: the reference trainer.
DEFAULT_IMAGE = "kubetune-trainer:0.1.0"
#: On the experiment, its ConfigMap and the trial pod template: what function runs.
FUNCTION_ANNOTATION = "kubetune.io/function"
#: On the experiment: the shipped source (also the readable form of a pickled function).
SOURCE_ANNOTATION = "kubetune.io/function-source"
# The launcher's side of these is kubetune.trial.launch (a unit test checks they agree).
MOUNT_PATH = "/var/run/kubetune/function"
ENV_FUNCTION_DIR = "KUBETUNE_FUNCTION_DIR"
ENV_WORKING_DIR = "KUBETUNE_WORKING_DIR"
MANIFEST_FILE = "function.json"
VOLUME = "kubetune-function"
LAUNCHER = ["python", "-m", "kubetune.trial.launch"]
_MAX_BYTES = 900 * 1024  # a ConfigMap holds at most 1 MiB
_MAX_SOURCE_ANNOTATION = 64 * 1024


class FunctionNotShippable(TuneError, TypeError):
    """The function cannot be sent to the trials; str() says why and what to do."""


@dataclass(frozen=True)
class ShippedFunction:
    """A function as the trials receive it: its files and a digest of them."""

    name: str
    origin: str
    """Where it came from, `train_mnist in examples/ray_mnist_function.py`."""
    format: Literal["source", "cloudpickle"]
    payload: bytes
    source: str | None
    """The source to show (the payload itself for the source format)."""
    why_pickled: str = ""

    @property
    def file(self) -> str:
        return "function.py" if self.format == "source" else "function.pkl"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    @property
    def summary(self) -> str:
        return f"{self.origin} ({self.format}, sha256:{self.sha256[:16]})"

    def manifest(self) -> dict[str, str]:
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        return {"name": self.name, "format": self.format, "file": self.file, "python": python,
                "origin": self.origin, "sha256": self.sha256}


def ship_function(fn: Any) -> ShippedFunction:
    """The function as the trials will run it; raises FunctionNotShippable with the reason."""
    name = getattr(fn, "__name__", type(fn).__name__)
    if not inspect.isfunction(fn):
        what = ("a class (Ray's class Trainable)" if inspect.isclass(fn)
                else f"a {type(fn).__name__}")
        raise FunctionNotShippable(
            f"the trainable {name!r} is {what}: pass a function def train_fn(config), or an "
            "image with command=[...]")
    if fn.__name__ == "<lambda>":
        raise FunctionNotShippable(
            "a lambda cannot be shipped to the trials: define it with def train_fn(config) "
            "at the top level of a module or notebook cell")
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn) \
            or inspect.isasyncgenfunction(fn):
        raise FunctionNotShippable(
            f"{name} is a coroutine or generator function: write a plain function that "
            "calls tune.report(...) for each result")
    try:
        inspect.signature(fn).bind({})
    except TypeError:
        raise FunctionNotShippable(
            f"{name}{inspect.signature(fn)} cannot be called with the trial's config: "
            f"write it as def {name}(config)") from None
    origin = f"{name} in {_where(fn)}"
    try:
        own_source: str | None = function_source(fn)
    except NotStandalone as exc:
        if fn.__module__ == "__main__":
            raise FunctionNotShippable(
                f"{name} was defined in an interactive session and {exc}: define it in a "
                "file or a notebook cell, whose source kubetune can ship") from None
        own_source = None
    try:
        source = standalone_source(fn)
    except NotStandalone as exc:
        shipped = ShippedFunction(name, origin, "cloudpickle", _pickle(fn, str(exc)),
                                  own_source, why_pickled=str(exc))
    else:
        header = f"# {origin}, shipped by kubetune with what it uses from its module.\n"
        shipped = ShippedFunction(name, origin, "source", (header + source).encode(),
                                  header + source)
    if len(shipped.payload) > _MAX_BYTES:
        raise FunctionNotShippable(
            f"{name} ships as {len(shipped.payload)} bytes ({shipped.format}), more than a "
            "ConfigMap holds (1 MiB): load large data in the function instead of at module "
            "level, or build an image")
    return shipped


def _where(fn: Any) -> str:
    """The file the function is defined in (its name: the shipment must not depend on
    where `fit()` was called from), else its module."""
    try:
        path = inspect.getsourcefile(fn)
    except TypeError:
        path = None
    return os.path.basename(path) if path else str(fn.__module__)


def _pickle(fn: Any, why: str) -> bytes:
    try:
        import cloudpickle
    except ModuleNotFoundError:
        raise FunctionNotShippable(
            f"the source of {fn.__name__} does not stand alone ({why}) and cloudpickle is not "
            "installed to pickle it: pip install cloudpickle") from None
    module = sys.modules.get(fn.__module__)
    by_value = module is not None and fn.__module__ != "__main__"
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        return bytes(cloudpickle.dumps(fn))
    except Exception as exc:  # pickling raises whatever the unpicklable object raises
        raise FunctionNotShippable(
            f"{fn.__name__} cannot be shipped: its source does not stand alone ({why}) and it "
            f"cannot be pickled ({type(exc).__name__}: {exc}); make what it uses at module "
            "level in the function itself, or pass it through the config") from None
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


# -- what the experiment carries -------------------------------------------------------------


def config_map_name(experiment: str) -> str:
    return f"{experiment}-function"


def pod_template(shipped: ShippedFunction, experiment: str, image: str | None,
                 env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The trial pod template that runs the shipped function with the launcher."""
    working_dir = (env or {}).get(ENV_WORKING_DIR) or os.environ.get(ENV_WORKING_DIR)
    container_env = [{"name": ENV_FUNCTION_DIR, "value": MOUNT_PATH}]
    if working_dir:
        container_env.append({"name": ENV_WORKING_DIR, "value": working_dir})
    return {
        "metadata": {"annotations": {FUNCTION_ANNOTATION: shipped.summary}},
        "spec": {
            "containers": [{
                "name": "trial", "image": image or DEFAULT_IMAGE, "command": list(LAUNCHER),
                "env": container_env,
                "volumeMounts": [{"name": VOLUME, "mountPath": MOUNT_PATH, "readOnly": True}],
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
            "volumes": [{"name": VOLUME, "configMap": {"name": config_map_name(experiment)}}],
        },
    }


def experiment_annotations(shipped: ShippedFunction) -> dict[str, str]:
    """Annotations for the TuneExperiment: what runs, and its source when it is small."""
    annotations = {FUNCTION_ANNOTATION: shipped.summary}
    if shipped.source is not None and len(shipped.source) <= _MAX_SOURCE_ANNOTATION:
        annotations[SOURCE_ANNOTATION] = shipped.source
    return annotations


def config_map(shipped: ShippedFunction, experiment: str,
               owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ConfigMap the trials mount, owned by `owner` (the created experiment) if given."""
    metadata: dict[str, Any] = {
        "name": config_map_name(experiment),
        "labels": {EXPERIMENT_LABEL: experiment},
        "annotations": {FUNCTION_ANNOTATION: shipped.summary},
    }
    if owner is not None:
        metadata["ownerReferences"] = [{
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneExperiment",
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
                            "data": {MANIFEST_FILE: json.dumps(shipped.manifest(), indent=1)}}
    if shipped.format == "source":
        body["data"][shipped.file] = shipped.payload.decode()
    else:
        body["binaryData"] = {shipped.file: base64.b64encode(shipped.payload).decode()}
        if shipped.source is not None:
            body["data"]["source.py"] = shipped.source
    return body


# -- writing it -------------------------------------------------------------------------------


def put_config_map(client: ExperimentClient, body: dict[str, Any]) -> None:
    """Create the ConfigMap, or replace what is there under its name."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    core: Any = k8s.CoreV1Api(client.api)  # plain dicts in and out
    name, namespace = body["metadata"]["name"], client.namespace
    try:
        try:
            core.create_namespaced_config_map(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = core.read_namespaced_config_map(name, namespace)
            body = {**body, "metadata": {**body["metadata"],
                                         "resourceVersion": current.metadata.resource_version}}
            core.replace_namespaced_config_map(name, namespace, body)
    except ApiException as exc:
        raise TuneError(
            f"cannot write ConfigMap {name!r} in namespace {namespace!r}, which ships the "
            f"function to the trials: {exc.status} {exc.reason}"
            + (" (allow this user to create and update configmaps there, or pass an image)"
               if exc.status == 403 else "")) from None


def ship_before_create(client: ExperimentClient, shipped: ShippedFunction,
                       experiment: str) -> None:
    """Before the experiment exists: the ConfigMap, not yet owned."""
    put_config_map(client, config_map(shipped, experiment))


def ship_after_create(client: ExperimentClient, shipped: ShippedFunction,
                      created: dict[str, Any]) -> None:
    """The experiment exists (just created, or found identical): the ConfigMap, owned by it."""
    put_config_map(client, config_map(shipped, created["metadata"]["name"], owner=created))


__all__ = [
    "DEFAULT_IMAGE",
    "FunctionNotShippable",
    "ShippedFunction",
    "config_map",
    "config_map_name",
    "experiment_annotations",
    "pod_template",
    "ship_after_create",
    "ship_before_create",
    "ship_function",
]
