"""Function trainables: what is shipped, what is refused, and the launcher that runs it."""

from __future__ import annotations

import base64
import functools
import importlib
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

import kubetune
from kubetune import tune
from kubetune.client import functions
from kubetune.client.functions import FunctionNotShippable, ship_function
from kubetune.trial import launch

MODULE = '''
from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict as OD

from kubetune import tune

SCALE = 2.5
NAMES = ("a", "b")
LOCK = threading.Lock()


class Model:
    def __init__(self, width: int) -> None:
        self.width = width

    def score(self, lr: float) -> float:
        return helper(lr) * self.width


def helper(lr: float) -> float:
    return -abs(math.log10(lr) + 2) * SCALE


def train_fn(config: dict) -> dict:
    model = Model(config["width"])
    for _ in range(3):
        tune.report({"score": model.score(config["lr"])})
    with open("cwd.txt", "w") as f:
        f.write(NAMES[0])
    return {"score": model.score(config["lr"]) + 1, "last": 1.0}


STATE = {"calls": OD()}


def uses_module_state(config):
    STATE["calls"][config["lr"]] = True
    tune.report({"score": float(len(STATE["calls"]))})


def uses_lock(config):
    with LOCK:
        tune.report(score=1.0)


def fails(config):
    tune.report(score=0.5)
    raise ValueError("diverged at lr=" + str(config["lr"]))
'''


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = f"user_train_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module(name)
    sys.modules.pop(name, None)


def run_launcher(shipped: functions.ShippedFunction, tmp_path: Path,
                 config: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Write the ConfigMap's files as a kubelet would, run the launcher on them."""
    body = functions.config_map(shipped, "exp")
    mount = tmp_path / "mount"
    mount.mkdir()
    for key, text in body["data"].items():
        (mount / key).write_text(text)
    for key, data in (body.get("binaryData") or {}).items():
        (mount / key).write_bytes(base64.b64decode(data))
    work = tmp_path / "work"
    env = {**os.environ, "KUBETUNE_METRICS_PORT": "0", "KUBETUNE_LINGER_SECONDS": "0",
           "KUBETUNE_TERMINATION_LOG": str(tmp_path / "termination-log"),
           "KUBETUNE_CONFIG": __import__("json").dumps(config),
           launch.ENV_FUNCTION_DIR: str(mount), launch.ENV_WORKING_DIR: str(work)}
    done = subprocess.run([sys.executable, "-m", "kubetune.trial.launch"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    log = tmp_path / "termination-log"
    message = kubetune.trial.parse_termination_message(log.read_text()) if log.exists() else {}
    return done, message or {}


def test_a_function_whose_source_stands_alone_ships_as_source_and_runs(module, tmp_path):
    shipped = ship_function(module.train_fn)
    assert shipped.format == "source"
    source = shipped.payload.decode()
    # What it uses comes along: imports, a literal constant, a class and a helper function.
    for line in ("import math", "from kubetune import tune", "SCALE = 2.5", "NAMES = ('a', 'b')",
                 "class Model:", "def helper(lr: float)", "def train_fn(config: dict)"):
        assert line in source
    # What it does not use stays behind, the unpicklable lock included.
    for unused in ("import json", "LOCK", "OrderedDict", "uses_module_state"):
        assert unused not in source
    done, message = run_launcher(shipped, tmp_path, {"width": 2, "lr": 0.01})
    assert done.returncode == 0, done.stderr
    # Three reports counted 1..3, then the returned dict is the fourth result.
    assert message["step"] == 4 and message["finished"] is True
    assert message["metrics"] == {"score": 1.0, "last": 1.0}
    assert (tmp_path / "work" / "cwd.txt").read_text() == "a"


def test_a_function_using_module_level_state_is_pickled_and_runs(module, tmp_path):
    shipped = ship_function(module.uses_module_state)
    assert shipped.format == "cloudpickle"
    assert "'STATE', a dict made at module level" in shipped.why_pickled
    assert shipped.source is not None and "def uses_module_state" in shipped.source
    body = functions.config_map(shipped, "exp")
    assert set(body["binaryData"]) == {"function.pkl"} and "source.py" in body["data"]
    done, message = run_launcher(shipped, tmp_path, {"lr": 0.1})
    assert done.returncode == 0, done.stderr
    assert message["metrics"] == {"score": 1.0} and message["step"] == 1


def test_a_closure_over_picklable_values_is_pickled(tmp_path):
    def make(scale: float) -> Any:
        def train(config: dict) -> None:
            tune.report(score=config["x"] * scale)
        return train

    shipped = ship_function(make(3.0))
    assert shipped.format == "cloudpickle"
    assert "closes over scale" in shipped.why_pickled
    done, message = run_launcher(shipped, tmp_path, {"x": 2})
    assert done.returncode == 0, done.stderr
    assert message["metrics"] == {"score": 6.0}


def test_a_function_over_an_unpicklable_lock_is_refused_with_the_reason(module):
    lock = threading.Lock()

    def train(config: dict) -> None:
        with lock:
            tune.report(score=1.0)

    with pytest.raises(FunctionNotShippable, match=r"cannot be pickled .*_thread\.lock"):
        ship_function(train)
    with pytest.raises(FunctionNotShippable, match=r"'LOCK', a lock made at module level"):
        ship_function(module.uses_lock)


@pytest.mark.parametrize("trainable, reason", [
    (lambda config: None, "a lambda cannot be shipped"),
    (type("Trainable", (), {}), "is a class"),
    (functools.partial(print, "x"), "is a partial"),
    (print, "is a builtin_function_or_method"),
])
def test_what_is_not_a_plain_function_is_refused(trainable, reason):
    with pytest.raises(FunctionNotShippable, match=reason):
        ship_function(trainable)


def test_generator_and_wrong_signature_functions_are_refused():
    def gen(config: dict) -> Any:
        yield config

    def two(config: dict, other: int) -> None:
        return None

    with pytest.raises(FunctionNotShippable, match="generator"):
        ship_function(gen)
    with pytest.raises(FunctionNotShippable, match=r"write it as def two\(config\)"):
        ship_function(two)


def test_an_interactive_function_without_source_is_refused():
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile("def train(config):\n    return None\n", "<stdin>", "exec"), namespace)
    with pytest.raises(FunctionNotShippable, match="interactive session"):
        ship_function(namespace["train"])


def tuner(trainable: Any, **kwargs: Any) -> kubetune.Tuner:
    return kubetune.Tuner(trainable, param_space={"lr": tune.loguniform(1e-4, 1e-1), "width": 2},
                          tune_config=kubetune.TuneConfig(metric="score", mode="max"),
                          name="fn", **kwargs)


def test_to_manifest_shows_what_runs(module, monkeypatch):
    monkeypatch.delenv(functions.ENV_WORKING_DIR, raising=False)
    manifest = tuner(module.train_fn, image="registry.example/train:1",
                     env={"EXTRA": "1"}, resources={"gpu": 1}).to_manifest()
    template = manifest["spec"]["trialTemplate"]
    main = template["spec"]["containers"][0]
    assert main["image"] == "registry.example/train:1"
    assert main["command"] == ["python", "-m", "kubetune.trial.launch"]
    assert main["volumeMounts"] == [{"name": "kubetune-function", "readOnly": True,
                                     "mountPath": "/var/run/kubetune/function"}]
    assert {"name": "EXTRA", "value": "1"} in main["env"]
    assert main["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert template["spec"]["volumes"] == [{"name": "kubetune-function",
                                            "configMap": {"name": "fn-function"}}]
    shipped = ship_function(module.train_fn)
    annotations = manifest["metadata"]["annotations"]
    assert annotations["kubetune.io/function-source"] == shipped.payload.decode()
    assert shipped.sha256[:16] in template["metadata"]["annotations"]["kubetune.io/function"]
    assert annotations["kubetune.io/function"].startswith(f"train_fn in {module.__name__}.py")


def test_the_default_image_is_the_reference_trainer_and_the_working_dir_travels(module,
                                                                                monkeypatch):
    monkeypatch.setenv(functions.ENV_WORKING_DIR, "/data")
    main = tuner(module.train_fn).to_manifest()["spec"]["trialTemplate"]["spec"]["containers"][0]
    assert main["image"] == functions.DEFAULT_IMAGE == "kubetune-trainer:0.1.0"
    assert {"name": "KUBETUNE_WORKING_DIR", "value": "/data"} in main["env"]


def test_a_refused_function_is_refused_at_to_manifest_with_the_reason():
    t = tuner(lambda config: None)  # accepted here, refused when the manifest is made
    with pytest.raises(FunctionNotShippable, match="a lambda cannot be shipped"):
        t.to_manifest()


def test_function_options_and_image_options_do_not_mix(module):
    with pytest.raises(ValueError, match="command= and args= are for an image trainable"):
        tuner(module.train_fn, command=["python", "x.py"]).to_manifest()
    with pytest.raises(ValueError, match="image= is the image a function trainable runs in"):
        tuner("registry.example/train:1", image="other:1")


def test_config_map_is_owned_by_the_experiment_once_it_exists(module):
    shipped = ship_function(module.train_fn)
    unowned = functions.config_map(shipped, "fn")
    assert "ownerReferences" not in unowned["metadata"]
    assert unowned["metadata"]["labels"] == {"kubetune.io/experiment": "fn"}
    owned = functions.config_map(shipped, "fn", owner={"metadata": {"name": "fn", "uid": "u1"}})
    assert owned["metadata"]["ownerReferences"] == [{
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuneExperiment", "name": "fn",
        "uid": "u1"}]
    manifest = __import__("json").loads(owned["data"]["function.json"])
    assert manifest["format"] == "source" and manifest["file"] == "function.py"
    assert manifest["name"] == "train_fn" and manifest["sha256"] == shipped.sha256


def test_the_client_and_the_launcher_agree_on_the_shipment_format():
    assert functions.MOUNT_PATH == launch.DEFAULT_FUNCTION_DIR
    assert functions.ENV_FUNCTION_DIR == launch.ENV_FUNCTION_DIR
    assert functions.ENV_WORKING_DIR == launch.ENV_WORKING_DIR
    assert functions.MANIFEST_FILE == launch.MANIFEST_FILE


def test_the_launcher_names_a_missing_shipment(tmp_path):
    env = {**os.environ, launch.ENV_FUNCTION_DIR: str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "kubetune.trial.launch"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no function.json in" in done.stderr and "mount the experiment's function" in done.stderr


def test_the_launcher_refuses_a_pickle_from_another_python(module, tmp_path):
    shipped = ship_function(module.uses_module_state)
    body = functions.config_map(shipped, "exp")
    (tmp_path / "function.pkl").write_bytes(base64.b64decode(body["binaryData"]["function.pkl"]))
    manifest = {**shipped.manifest(), "python": "3.7"}
    (tmp_path / "function.json").write_text(__import__("json").dumps(manifest))
    with pytest.raises(launch.ShipmentError, match=r"pickled with Python 3\.7"):
        launch.load_function(tmp_path)


def test_source_of_a_notebook_style_main_is_rebuilt_from_values():
    """No module file (a notebook's __main__): imports are rebuilt from the values."""
    namespace: dict[str, Any] = {"__name__": "__main__", "math": __import__("math"),
                                 "textwrap": textwrap, "Path": Path}
    source = "def train(config):\n    return {'v': math.sqrt(config['x']), 'p': str(Path('.'))}\n"
    code = compile(source, "<cell-1>", "exec")
    import linecache
    linecache.cache["<cell-1>"] = (len(source), None, source.splitlines(True), "<cell-1>")
    try:
        exec(code, namespace)
        shipped = ship_function(namespace["train"])
    finally:
        linecache.cache.pop("<cell-1>", None)
    assert shipped.format == "source"
    text = shipped.payload.decode()
    assert "import math" in text and "from pathlib import Path" in text
    assert "textwrap" not in text


def test_a_function_that_raises_fails_its_trial_with_the_traceback(module, tmp_path):
    done, message = run_launcher(ship_function(module.fails), tmp_path, {"lr": 0.5})
    assert done.returncode == 1
    assert "ValueError: diverged at lr=0.5" in done.stderr
    assert message["finished"] is False and message["metrics"] == {"score": 0.5}


def test_the_config_map_for_kubectl_apply_is_the_one_the_template_mounts(module):
    t = tuner(module.train_fn, namespace="ml")
    body, manifest = t.function_config_map(), t.to_manifest()
    volume = manifest["spec"]["trialTemplate"]["spec"]["volumes"][0]["configMap"]["name"]
    assert body["metadata"]["name"] == volume and body["metadata"]["namespace"] == "ml"
    assert body["data"]["function.py"] == manifest["metadata"]["annotations"][
        "kubetune.io/function-source"]
    with pytest.raises(ValueError, match="only a function trainable"):
        tuner("registry.example/train:1").function_config_map()
