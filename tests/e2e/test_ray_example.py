"""The seed's Ray Tune MNIST example, run by kubetune on the local control plane.

examples/ray_mnist_function.py is the seed's "Simple Code Example" (the Ray Tune
method document) with only its imports and the Tuner call's image changed; the
first test checks that against the seed itself. The second runs the file as a user
would, `python examples/ray_mnist_function.py`, against the dev cluster: the function
is shipped in a ConfigMap, every trial runs it with torchvision's real MNIST loader
on a small MNIST-format file set written here (the loader finds the files and skips
the download, as it does for any complete set), and the example prints the best config.
"""

from __future__ import annotations

import ast
import difflib
import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubetune.api import EXPERIMENT_PLURAL, GROUP, TRIAL_PLURAL, VERSION
from kubetune.client import functions

REPO = Path(__file__).resolve().parents[2]
SEED = Path("/work/shared/seeds/ray-tune-method.md")
EXAMPLE = REPO / "examples" / "ray_mnist_function.py"
MAX_CHANGED_LINES = 5


def seed_code() -> str:
    if not SEED.is_file():
        pytest.skip(f"the seed document is not at {SEED}")
    text = SEED.read_text()
    match = re.search(r"Simple Code Example.*?```python\n(.*?)```", text, re.S)
    assert match, "no Simple Code Example code block in the seed"
    return match.group(1)


def changed_lines() -> tuple[list[str], list[str]]:
    """The seed's lines the example changed, and the example's lines that replace them."""
    diff = list(difflib.unified_diff(seed_code().splitlines(), EXAMPLE.read_text().splitlines(),
                                     "seed", "example", lineterm="", n=0))
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    print("\n".join(diff))
    return removed, added


def test_the_example_is_the_seeds_code_with_only_imports_and_the_image_changed():
    removed, added = changed_lines()
    assert max(len(removed), len(added)) <= MAX_CHANGED_LINES, (removed, added)
    # What the seed loses is its Ray imports; what the example gains is marked.
    assert removed and all(line.startswith(("import ray", "from ray")) for line in removed)
    assert all("# kubetune:" in line for line in added)
    imports = [line for line in added if line.startswith(("import ", "from "))]
    others = [line.strip() for line in added if line not in imports]
    assert len(imports) == len(removed)
    assert [line.split("=")[0] for line in others] == ["image"]
    # The image line sits inside the Tuner(...) call.
    tree = ast.parse(EXAMPLE.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", None) == "Tuner"]
    assert len(calls) == 1 and "image" in {k.arg for k in calls[0].keywords}


def write_mnist(root: Path, train: int = 384, test: int = 192) -> None:
    """An MNIST-format file set (idx-ubyte, gzipped as on the mirrors, and extracted as
    torchvision's download leaves them) of learnable digits: a bright block per class."""
    from torchvision.datasets.utils import extract_archive

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count, seed in (("train", train, 1), ("t10k", test, 2)):
        labels = bytes((i * 7 + seed) % 10 for i in range(count))
        images = bytearray()
        state = seed
        for label in labels:
            image = bytearray(28 * 28)
            row, col = 2 + (label // 5) * 13, 1 + (label % 5) * 5
            for i in range(28 * 28):
                state = (state * 1103515245 + 12345) % 2**31
                image[i] = state % 60  # noise
            for r in range(row, row + 10):
                for c in range(col, col + 4):
                    image[r * 28 + c] = 255
            images += image
        files = {f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, count, 28, 28)
                 + bytes(images),
                 f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, count) + labels}
        for name, data in files.items():
            gz = raw / f"{name}.gz"
            gz.write_bytes(gzip.compress(data))
            extract_archive(str(gz), str(raw))


def namespaced_kubeconfig(source: Path, namespace: str, target: Path) -> Path:
    config = yaml.safe_load(source.read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = namespace
    target.write_text(yaml.safe_dump(config))
    return target


@pytest.mark.timeout(900)
def test_the_seeds_mnist_example_runs_on_the_dev_cluster(cluster: Any, api_client: Any,
                                                         operator: Any, namespace: str,
                                                         tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_mnist(data)
    env = {**os.environ,
           "KUBECONFIG": str(namespaced_kubeconfig(cluster.kubeconfig, namespace,
                                                   tmp_path / "kubeconfig")),
           "KUBETUNE_PROMETHEUS_URL": cluster.prometheus_url,
           functions.ENV_WORKING_DIR: str(data)}
    done = subprocess.run([sys.executable, str(EXAMPLE)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=840)
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-4000:]
    best = re.search(r"^Best config: (.*)$", done.stdout, re.M)
    accuracy = re.search(r"^Best accuracy: ([0-9.]+)$", done.stdout, re.M)
    assert best and accuracy, done.stdout
    config = ast.literal_eval(best.group(1))
    assert set(config) == {"lr", "hidden_size"}
    assert 1e-5 <= config["lr"] <= 1e-1 and config["hidden_size"] in (64, 128, 256)

    custom = client.CustomObjectsApi(api_client)
    [experiment] = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, EXPERIMENT_PLURAL)["items"]
    name = experiment["metadata"]["name"]
    assert experiment["status"]["phase"] == "Succeeded", experiment["status"]
    # What runs is on the experiment: the launcher, the ConfigMap volume, the source.
    main = experiment["spec"]["trialTemplate"]["spec"]["containers"][0]
    assert main["command"] == functions.LAUNCHER and main["image"] == "kubetune-trainer:0.1.0"
    assert experiment["spec"]["trialTemplate"]["spec"]["volumes"] == [
        {"name": functions.VOLUME, "configMap": {"name": f"{name}-function"}}]
    source = experiment["metadata"]["annotations"][functions.SOURCE_ANNOTATION]
    assert "def train_mnist(config):" in source and "class SimpleNet" in source
    assert "ray" not in re.findall(r"^(?:import|from) (\w+)", source, re.M)
    cm = client.CoreV1Api(api_client).read_namespaced_config_map(f"{name}-function", namespace)
    assert [(o.kind, o.uid) for o in cm.metadata.owner_references] == [
        ("TuneExperiment", experiment["metadata"]["uid"])]
    assert cm.data["function.py"] == source

    trials = custom.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                  TRIAL_PLURAL)["items"]
    assert len(trials) == 6
    states = {t["metadata"]["name"]: t["status"]["state"] for t in trials}
    assert set(states.values()) <= {"Succeeded", "Pruned"}, states
    # tune.report(accuracy=...) once an epoch: steps 1 and 2, counted for the trial.
    finished = [t for t in trials if t["status"]["state"] == "Succeeded"]
    assert finished and all(t["status"].get("step") == 2 for t in finished), [
        t["status"] for t in trials]
    best_trial = max(finished, key=lambda t: t["status"]["metrics"]["accuracy"])
    assert best_trial["spec"]["params"] == config
    assert abs(best_trial["status"]["metrics"]["accuracy"] - float(accuracy.group(1))) < 1e-4
