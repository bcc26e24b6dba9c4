"""The generated CRDs: in sync with the models, structural, and validating what Python validates."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kubetune.api import DOMAIN_KINDS, SearchDomain, TuneExperimentSpec
from kubetune.api.crdgen import HEADER, build_crds, crd_filename, main, render
from kubetune.api.domain_rules import NUMERIC_DOMAINS

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"


@pytest.fixture(scope="module")
def crds() -> dict[str, dict[str, Any]]:
    return {crd["spec"]["names"]["kind"]: crd for crd in build_crds()}


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def entry_schema(crds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    space = root_schema(crds["TuneExperiment"])["properties"]["spec"]["properties"]["searchSpace"]
    entry: dict[str, Any] = space["additionalProperties"]
    return entry


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def test_committed_crds_match_the_models(crds: dict[str, dict[str, Any]]) -> None:
    for crd in crds.values():
        committed = CRDS_DIR / crd_filename(crd)
        assert committed.exists(), f"{committed} is missing; run `make crds`"
        assert committed.read_text() == render(crd), f"{committed.name} is stale; run `make crds`"


def test_crdgen_command_writes_both_files_with_a_header(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["tuneexperiments.kubetune.io.yaml", "tunetrials.kubetune.io.yaml"]
    text = (tmp_path / written[0]).read_text()
    assert text.startswith(HEADER) and "make crds" in HEADER
    assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"


@pytest.mark.parametrize("argv", [["--bogus", "crds"], [], ["a", "b"]])
def test_crdgen_rejects_a_bad_command_line_with_exit_code_2(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_crdgen_module_prints_help_and_writes_where_the_makefile_says(tmp_path: Path) -> None:
    def crdgen(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "kubetune.api.crdgen", *args]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    shown = crdgen("--help")
    assert shown.returncode == 0 and "OUTPUT_DIR" in shown.stdout and not list(tmp_path.iterdir())
    written = crdgen("crds")  # as `make crds` calls it
    assert written.returncode == 0, written.stderr
    assert sorted(p.name for p in (tmp_path / "crds").iterdir()) == [
        "tuneexperiments.kubetune.io.yaml", "tunetrials.kubetune.io.yaml",
    ]


def test_generation_is_deterministic() -> None:
    assert [render(c) for c in build_crds()] == [render(c) for c in build_crds()]


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [("TuneExperiment", "tuneexperiments", "tx"), ("TuneTrial", "tunetrials", "tt")],
)
def test_names_scope_category_and_status_subresource(
    crds: dict[str, dict[str, Any]], kind: str, plural: str, short: str
) -> None:
    crd = crds[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{plural}.kubetune.io"
    assert crd["spec"]["group"] == "kubetune.io" and crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["plural"], names["singular"], names["listKind"]) == (
        plural,
        kind.lower(),
        f"{kind}List",
    )
    assert names["shortNames"] == [short] and names["categories"] == ["kubetune"]
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        (
            "TuneExperiment",
            [
                ("Phase", "string", ".status.phase"),
                ("Running", "integer", ".status.trials.running"),
                ("Pruned", "integer", ".status.trials.pruned"),
                ("Succeeded", "integer", ".status.trials.succeeded"),
                ("Failed", "integer", ".status.trials.failed"),
                ("Best", "number", ".status.bestTrial.metric"),
                ("Age", "date", ".metadata.creationTimestamp"),
                ("Message", "string", ".status.message"),
            ],
        ),
        (
            "TuneTrial",
            [
                ("State", "string", ".status.state"),
                ("Step", "integer", ".status.step"),
                ("Objective", "number", ".status.objective"),
                ("Attempts", "integer", ".status.attempts"),
                ("Experiment", "string", ".spec.experiment"),
                ("Age", "date", ".metadata.creationTimestamp"),
            ],
        ),
    ],
)
def test_printer_columns(
    crds: dict[str, dict[str, Any]], kind: str, columns: list[tuple[str, str, str]]
) -> None:
    printed = crds[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["type"], c["jsonPath"]) for c in printed] == columns
    assert all(c["description"] for c in printed)


def test_printer_column_paths_exist_in_the_schema(crds: dict[str, dict[str, Any]]) -> None:
    for crd in crds.values():
        schema = root_schema(crd)
        for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
            node = schema
            for part in column["jsonPath"].lstrip(".").split("."):
                if part == "creationTimestamp":
                    break
                node = node["properties"][part]


@pytest.mark.parametrize("kind", ["TuneExperiment", "TuneTrial"])
def test_schema_is_structural(crds: dict[str, dict[str, Any]], kind: str) -> None:
    for path, node in nodes(root_schema(crds[kind])):
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not"} & set(node), path
        assert not {"title", "const", "examples", "discriminator"} & set(node), path
        assert "default" not in node or node["default"] is not None, path
        assert (
            "type" in node
            or node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        ), f"{path} has no type"
        if "properties" in node:
            assert node["type"] == "object" and "additionalProperties" not in node, path
        for flag in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(flag, True), bool), f"{path}.{flag} must be a boolean"


@pytest.mark.parametrize("kind", ["TuneExperiment", "TuneTrial"])
def test_every_declared_field_is_documented(crds: dict[str, dict[str, Any]], kind: str) -> None:
    for path, node in nodes(root_schema(crds[kind])):
        for name, sub in node.get("properties", {}).items():
            if f"{path}.{name}" not in (".metadata",):
                assert sub.get("description"), f"{path}.{name} has no description"


@pytest.mark.parametrize("kind", ["TuneExperiment", "TuneTrial"])
def test_status_schema_is_strict(crds: dict[str, dict[str, Any]], kind: str) -> None:
    status = root_schema(crds[kind])["properties"]["status"]
    assert "x-kubernetes-preserve-unknown-fields" not in status
    assert status["properties"]


def test_search_domain_entry_declares_exactly_the_known_domains(
    crds: dict[str, dict[str, Any]],
) -> None:
    entry = entry_schema(crds)
    assert list(entry["properties"]) == list(DOMAIN_KINDS)
    # The apiserver prunes unknown keys before validating, so {uniformm: [0, 1]} arrives
    # as {} and must fail minProperties; preserving unknown fields here would let it through.
    assert entry["minProperties"] == 1 and entry["maxProperties"] == 1
    assert "x-kubernetes-preserve-unknown-fields" not in entry
    assert "additionalProperties" not in entry


def test_nested_space_and_values_hold_any_json(crds: dict[str, dict[str, Any]]) -> None:
    props = entry_schema(crds)["properties"]
    # Untyped, so `self.searchSpace == oldSelf.searchSpace` compares it whole.
    assert props["space"] == {
        "description": props["space"]["description"],
        "x-kubernetes-preserve-unknown-fields": True,
    }
    for key in ("choice", "grid"):
        assert props[key]["items"] == {
            "nullable": True,
            "x-kubernetes-preserve-unknown-fields": True,
        }
    assert props["value"]["nullable"] and props["value"]["x-kubernetes-preserve-unknown-fields"]


def test_numeric_domains_declare_their_arity_and_number_type(
    crds: dict[str, dict[str, Any]],
) -> None:
    props = entry_schema(crds)["properties"]
    for kind, shape in NUMERIC_DOMAINS.items():
        assert props[kind]["minItems"] == min(shape.arities), kind
        assert props[kind]["maxItems"] == max(shape.arities), kind
        assert props[kind]["items"]["type"] == ("integer" if shape.integer else "number"), kind


def test_cel_cost_is_bounded_by_list_and_map_sizes(crds: dict[str, dict[str, Any]]) -> None:
    spec = root_schema(crds["TuneExperiment"])["properties"]["spec"]
    assert spec["properties"]["searchSpace"]["maxProperties"] <= 128
    for name, prop in entry_schema(crds)["properties"].items():
        if prop.get("type") == "array":
            assert prop["maxItems"] <= 1024, name


def test_trial_template_is_a_pod_template_with_required_containers(
    crds: dict[str, dict[str, Any]],
) -> None:
    template = root_schema(crds["TuneExperiment"])["properties"]["spec"]["properties"][
        "trialTemplate"
    ]
    assert template["type"] == "object" and template["x-kubernetes-preserve-unknown-fields"]
    assert template["required"] == ["spec"]
    pod = template["properties"]["spec"]
    assert pod["type"] == "object" and pod["x-kubernetes-preserve-unknown-fields"]
    assert pod["required"] == ["containers"]
    containers = pod["properties"]["containers"]
    assert containers["type"] == "array" and containers["minItems"] == 1
    container = containers["items"]
    assert container["type"] == "object" and container["x-kubernetes-preserve-unknown-fields"]
    # name and env are typed (the env rule reads them); the other Container fields are declared
    # untyped, kept as written, so the immutability rule compares them by name.
    assert {"name", "env", "command", "args", "image", "resources"} <= set(container["properties"])
    assert container["properties"]["args"] == {
        "description": container["properties"]["args"]["description"],
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert {"nodeSelector", "tolerations", "volumes"} <= set(pod["properties"])
    env = container["properties"]["env"]["items"]
    assert env["x-kubernetes-preserve-unknown-fields"] and env["required"] == ["name"]


def test_enums_are_published(crds: dict[str, dict[str, Any]]) -> None:
    spec = root_schema(crds["TuneExperiment"])["properties"]["spec"]["properties"]
    assert spec["objective"]["properties"]["mode"]["enum"] == ["min", "max"]
    assert spec["scheduler"]["properties"]["type"]["enum"] == ["asha", "fifo", "median", "pbt"]
    assert spec["searchAlgorithm"]["properties"]["type"]["enum"] == [
        "random", "grid", "tpe", "gp", "cmaes", "qmc"]
    trial_status = root_schema(crds["TuneTrial"])["properties"]["status"]["properties"]
    assert trial_status["state"]["enum"] == ["Pending", "Running", "Succeeded", "Pruned", "Failed"]
    decision = trial_status["rungs"]["items"]["properties"]["decision"]
    assert decision["enum"] == ["continue", "stop"]


def test_conditions_are_a_map_list_keyed_by_type(crds: dict[str, dict[str, Any]]) -> None:
    conditions = root_schema(crds["TuneExperiment"])["properties"]["status"]["properties"][
        "conditions"
    ]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["required"] == ["type", "status"]


def test_scheduler_rule_checks_grace_period_against_max_t(crds: dict[str, dict[str, Any]]) -> None:
    scheduler = root_schema(crds["TuneExperiment"])["properties"]["spec"]["properties"]["scheduler"]
    (rule,) = scheduler["x-kubernetes-validations"]
    assert "self.gracePeriod <= self.maxT" in rule["rule"]
    assert rule["fieldPath"] == ".gracePeriod" and "gracePeriod" in rule["message"]
    assert scheduler["properties"]["reductionFactor"]["minimum"] == 2


@pytest.mark.parametrize(
    "kind",
    [
        "uniform",
        "quniform",
        "loguniform",
        "qloguniform",
        "randint",
        "qrandint",
        "lograndint",
        "qlograndint",
    ],
)
def test_every_two_bound_domain_has_a_low_below_high_rule(
    crds: dict[str, dict[str, Any]], kind: str
) -> None:
    rules = entry_schema(crds)["x-kubernetes-validations"]
    assert any(
        f"self.{kind}[0] < self.{kind}[1]" in r["rule"] and kind in r["message"] for r in rules
    )


def _apply_defaults(schema: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver's defaulting does to an object, for the parts our schema uses."""
    out = copy.deepcopy(obj)
    for name, prop in schema.get("properties", {}).items():
        if name not in out and "default" in prop:
            out[name] = copy.deepcopy(prop["default"])
        if isinstance(out.get(name), dict) and "properties" in prop:
            out[name] = _apply_defaults(prop, out[name])
    return out


def test_apiserver_defaults_equal_the_model_defaults(crds: dict[str, dict[str, Any]]) -> None:
    spec_schema = root_schema(crds["TuneExperiment"])["properties"]["spec"]
    minimal = {
        "objective": {"metric": "loss", "mode": "min"},
        "searchSpace": {"lr": {"uniform": [0.0, 1.0]}},
        "trialTemplate": {"spec": {"containers": [{"name": "t"}]}},
    }
    defaulted = _apply_defaults(spec_schema, minimal)
    from_model = TuneExperimentSpec.model_validate(minimal).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    assert defaulted == from_model


_CEL = [
    (re.compile(r"!has\(self\.(\w+)\)"), r'("\1" not in self)'),
    (re.compile(r"size\(self\.(\w+)\)"), r'len(self["\1"])'),
    (re.compile(r"self\.(\w+)"), r'self["\1"]'),
    (re.compile(r"\|\|"), " or "),
]


def _cel_allows(rule: str, entry: dict[str, Any]) -> bool:
    """Evaluate one of our (deliberately simple) CEL rules in Python."""
    for pattern, replacement in _CEL:
        rule = pattern.sub(replacement, rule)
    return bool(eval(rule, {"__builtins__": {"len": len}}, {"self": entry}))


def _entries() -> st.SearchStrategy[dict[str, Any]]:
    def for_kind(kind: str) -> st.SearchStrategy[dict[str, Any]]:
        shape = NUMERIC_DOMAINS[kind]
        number: st.SearchStrategy[Any] = (
            st.integers(-4, 12)
            if shape.integer
            else st.sampled_from([-1.0, 0.0, 0.25, 0.5, 1.0, 2.0, 10.0])
        )
        lengths = st.sampled_from(shape.arities)
        return lengths.flatmap(lambda n: st.lists(number, min_size=n, max_size=n)).map(
            lambda args: {kind: args}
        )

    return st.sampled_from(sorted(NUMERIC_DOMAINS)).flatmap(for_kind)


_ENTRY_RULES = entry_schema({c["spec"]["names"]["kind"]: c for c in build_crds()})[
    "x-kubernetes-validations"
]


@given(_entries())
def test_python_rejects_every_entry_the_cel_rules_reject(entry: dict[str, Any]) -> None:
    cel_ok = all(_cel_allows(r["rule"], entry) for r in _ENTRY_RULES)
    try:
        SearchDomain.model_validate(entry)
        python_ok = True
    except ValidationError:
        python_ok = False
    assert cel_ok or not python_ok, f"CEL rejects {entry} but Python accepts it"


@pytest.mark.parametrize(
    ("entry", "allowed"),
    [
        ({"uniform": [0.0, 1.0]}, True),
        ({"uniform": [1.0, 0.0]}, False),
        ({"loguniform": [0.0, 1.0]}, False),
        ({"loguniform": [1.0, 10.0, 1.0]}, False),
        ({"quniform": [0.0, 1.0, 0.0]}, False),
        ({"randn": [0.0, 0.0]}, False),
        ({"randn": []}, True),
        ({"qrandint": [1, 10]}, True),
        ({"qlograndint": [1, 10, 0]}, False),
    ],
)
def test_cel_rules_evaluate_as_the_apiserver_would(entry: dict[str, Any], allowed: bool) -> None:
    assert all(_cel_allows(r["rule"], entry) for r in _ENTRY_RULES) is allowed
