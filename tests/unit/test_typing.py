"""What a user writes against `import kubetune` is type-checked: mypy reports the mistakes.

`kubetune.Tuner` and the configs are reached through the package's module
`__getattr__` at run time; mypy sees the real classes through the imports under
TYPE_CHECKING. The sample script below has one deliberate mistake per line
marked `# E: <what mypy must say>`; the same script with those lines removed
must pass.
"""

from __future__ import annotations

import pydoc
import re
from pathlib import Path

import pytest

import kubetune

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = '''\
import datetime

import kubetune
from kubetune import tune

tuner = kubetune.Tuner(
    "registry.example/trainer:1",
    param_space={"lr": tune.loguniform(1e-4, 1e-1), "bs": tune.choice([32, 64])},
    tune_config=kubetune.TuneConfig(
        metric="accuracy", mode="max", num_samples=8,
        scheduler=kubetune.ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3),
        search_alg=kubetune.OptunaSearch(sampler="tpe", seed=1),
        time_budget_s=datetime.timedelta(minutes=5)),
    run_config=kubetune.RunConfig(
        stop={"training_iteration": 9, "accuracy": 0.98},
        failure_config=kubetune.FailureConfig(max_failures=1)),
)
grid: kubetune.ResultGrid = tuner.fit()
best: kubetune.Result = grid.get_best_result(scope="last-5-avg")
config: dict[str, object] = best.config
if best.checkpoint is not None:
    directory: str = best.checkpoint.to_directory()
errors: int = grid.num_errors + grid.num_terminated
where: str = grid.experiment_path
trainable = tune.with_resources("registry.example/trainer:1", {"gpu": 1})
kubetune.TuneConfig(metric="accuracy", mode="maximize")  # E: Argument "mode" to "TuneConfig" has incompatible type
kubetune.TuneConfig(num_samples="10")  # E: Argument "num_samples" to "TuneConfig" has incompatible type "str"
kubetune.ASHAScheduler(max_t="9")  # E: Argument "max_t" to "ASHAScheduler" has incompatible type "str"
kubetune.FailureConfig(max_failure=1)  # E: Unexpected keyword argument "max_failure" for "FailureConfig"
kubetune.RunConfig(stop=lambda trial_id, result: True)  # E: Argument "stop" to "RunConfig" has incompatible type
kubetune.OptunaSearch(sampler="hyperopt")  # E: Argument "sampler" to "OptunaSearch" has incompatible type
kubetune.Tuner("img", param_space={}, tune_config=kubetune.RunConfig())  # E: Argument "tune_config" to "Tuner" has incompatible type "RunConfig"
grid.get_best_result(scope="best")  # E: Argument "scope" to "get_best_result" of "ResultGrid" has incompatible type
best.checkpoint.to_directory()  # E: Item "None" of "Checkpoint | None" has no attribute "to_directory"
n: str = grid.num_errors  # E: Incompatible types in assignment (expression has type "int", variable has type "str")
kubetune.Tunner  # E: Module has no attribute "Tunner"
'''


def _mypy(tmp_path: Path, text: str, module: str) -> tuple[int, str]:
    api = pytest.importorskip("mypy.api")
    script = tmp_path / f"{module}.py"  # one module name per text: the cache is kept by name
    script.write_text(text)
    out, err, status = api.run([
        "--config-file", str(ROOT / "pyproject.toml"), "--follow-imports=silent",
        "--cache-dir", str(Path("/tmp") / "kubetune-typing-test-mypy-cache"),
        "--no-error-summary", "--hide-error-context", str(script)])
    return status, out + err


def test_mypy_reports_each_deliberate_mistake_on_its_line(tmp_path: Path) -> None:
    status, out = _mypy(tmp_path, SAMPLE, "user_script")
    assert status == 1, out
    expected = {i: m.group(1) for i, line in enumerate(SAMPLE.splitlines(), 1)
                if (m := re.search(r"# E: (.*)$", line))}
    assert len(expected) == 11
    reported: dict[int, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r".*user_script\.py:(\d+): error: (.*)$", line)
        if m:
            reported.setdefault(int(m.group(1)), []).append(m.group(2))
    for number, message in expected.items():
        assert any(message in said for said in reported.get(number, [])), \
            f"line {number}: mypy did not say {message!r}; it said {reported.get(number)}"
    assert set(reported) == set(expected), f"unexpected errors: {out}"


def test_the_same_script_without_its_mistakes_passes(tmp_path: Path) -> None:
    correct = "\n".join(line for line in SAMPLE.splitlines() if "# E:" not in line) + "\n"
    status, out = _mypy(tmp_path, correct, "correct_user_script")
    assert status == 0, out


@pytest.mark.parametrize("name", ["Tuner", "TuneConfig", "RunConfig", "FailureConfig",
                                  "ASHAScheduler", "MedianStoppingRule", "FIFOScheduler",
                                  "PopulationBasedTraining", "OptunaSearch", "ResultGrid"])
def test_the_user_side_names_are_in_dir_and_help(name: str) -> None:
    assert name in dir(kubetune) and name in kubetune.__all__
    doc = pydoc.render_doc(getattr(kubetune, name), renderer=pydoc.plaintext)
    assert f"class {name}" in doc
