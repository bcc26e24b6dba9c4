"""`python -m kubetune.trial.launch`: run the Python function `kubetune.Tuner(train_fn)` shipped.

The client puts the function in a ConfigMap owned by the TuneExperiment
(`kubetune.client.functions`); the trial pod mounts it as a configMap volume at
KUBETUNE_FUNCTION_DIR (default /var/run/kubetune/function):

    function.json   {"name": "train_mnist", "format": "source" | "cloudpickle",
                     "file": "function.py" | "function.pkl", "python": "3.11", ...}
    function.py     (source) the function with the imports and module-level definitions
                    it uses, run as the module `kubetune_function`
    function.pkl    (cloudpickle) the function pickled by value; loading it needs
                    cloudpickle and the same Python minor version as the client's

The launcher starts the trial's session (metrics endpoint, SIGTERM handling), changes
to KUBETUNE_WORKING_DIR when it is set (else stays in the image's working directory),
and calls the function with the trial's config dict, as Ray does. A dict the function
returns is reported as its last result, as Ray takes a function's return value. An
exception ends the container with exit code 1 and the traceback in its log (the pod
template sets terminationMessagePolicy FallbackToLogsOnError); a shipment it cannot
read ends it with exit code 2 and the reason.

Imported inside trial pods: stdlib and `kubetune.trial` only (pickle finds cloudpickle
by name when it loads one).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from kubetune import trial as _trial
from kubetune.trial import tune_api

#: The trial container's variable naming the directory the ConfigMap is mounted at.
ENV_FUNCTION_DIR = "KUBETUNE_FUNCTION_DIR"
#: Where the client's pod template mounts it.
DEFAULT_FUNCTION_DIR = "/var/run/kubetune/function"
#: The directory the function runs in, when set (created if missing).
ENV_WORKING_DIR = "KUBETUNE_WORKING_DIR"
#: The shipment's description, the one file the launcher reads first.
MANIFEST_FILE = "function.json"
#: The module name the shipped source runs as.
MODULE_NAME = "kubetune_function"
FORMATS = ("source", "cloudpickle")


class ShipmentError(Exception):
    """The mounted function cannot be read or run here; the message says why."""


def load_function(directory: Path) -> Callable[[dict[str, Any]], Any]:
    """The shipped function in `directory`, ready to call."""
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShipmentError(
            f"no {MANIFEST_FILE} in {directory}: mount the experiment's function ConfigMap "
            f"there, or set {ENV_FUNCTION_DIR}") from None
    except (OSError, ValueError) as exc:
        raise ShipmentError(f"cannot read {directory / MANIFEST_FILE}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise ShipmentError(f"{directory / MANIFEST_FILE} names no format of {FORMATS}: "
                            "it was written by another kubetune version")
    name, payload = str(manifest.get("name", "")), directory / str(manifest.get("file", ""))
    if manifest["format"] == "source":
        fn = getattr(_run_source(payload), name, None)
    else:
        fn = _unpickle(payload, str(manifest.get("python", "")))
    if not callable(fn):
        raise ShipmentError(f"the shipment in {directory} defines no function {name!r}")
    return fn  # type: ignore[no-any-return]


def _run_source(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ShipmentError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered first, so classes defined there pickle (DataLoader workers, torch.save).
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


def _unpickle(path: Path, python: str) -> object:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python and python != here:
        raise ShipmentError(f"the function was pickled with Python {python} and this image runs "
                            f"Python {here}: use an image with Python {python}, or make the "
                            "function's source stand alone (see kubetune.client.functions)")
    try:
        return pickle.loads(path.read_bytes())  # the experiment's own function
    except ModuleNotFoundError as exc:
        hint = " (pip install cloudpickle in the image)" if exc.name == "cloudpickle" else ""
        raise ShipmentError(f"cannot load the pickled function: {exc}{hint}") from None


def run(fn: Callable[[dict[str, Any]], Any]) -> None:
    """Call `fn` with this trial's config inside its session; report a returned dict."""
    session = _trial.get_session()
    result = fn(session.config())
    if isinstance(result, Mapping) and result:
        tune_api.report(result)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0] if args else os.environ.get(ENV_FUNCTION_DIR) or DEFAULT_FUNCTION_DIR)
    try:
        fn = load_function(directory)
    except ShipmentError as exc:
        sys.stderr.write(f"kubetune.trial.launch: {exc}\n")
        return 2
    working_dir = os.environ.get(ENV_WORKING_DIR)
    if working_dir:
        Path(working_dir).mkdir(parents=True, exist_ok=True)
        os.chdir(working_dir)
    run(fn)
    _trial.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
