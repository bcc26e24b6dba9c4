"""charts/kubetune/README.md is generated from README.md.gotmpl and values.yaml's `# --`
comments by helm-docs (`make chart-readme`), and is up to date: regenerating it changes
nothing. Without helm-docs the byte-for-byte check is skipped, but the README's values table
still has to list exactly the keys values.yaml documents."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubetune"
HELM_DOCS_VERSION = "v1.14.2"  # hack/helm-docs.sh installs this one


def helm_docs() -> str | None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    candidates = [os.environ.get("HELM_DOCS", ""),
                  str(cache / "kubetune" / "tools" / f"helm-docs-{HELM_DOCS_VERSION}" / "helm-docs"),
                  shutil.which("helm-docs") or ""]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def documented_keys() -> set[str]:
    """Dotted keys of values.yaml with a `# --` comment (helm-docs' marker) above them."""
    keys: set[str] = set()
    stack: list[tuple[int, str]] = []
    in_doc = False
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            in_doc = in_doc or stripped.startswith("# --")
            continue
        m = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not m:
            in_doc = False
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if in_doc:
            keys.add(".".join(k for _, k in stack))
        in_doc = False
    return keys


def readme_keys() -> set[str]:
    values_table = (CHART / "README.md").read_text().split("\n## Values\n", 1)[-1]
    return set(re.findall(r"^\| ([A-Za-z][A-Za-z0-9.]*) \| [a-z]+ \|", values_table, flags=re.M))


def test_readme_lists_every_documented_value_and_no_other() -> None:
    documented, listed = documented_keys(), readme_keys()
    assert len(documented) > 40
    assert documented <= listed, f"not in README.md (run `make chart-readme`): {documented - listed}"
    # helm-docs also lists the leaves of a documented map; any other extra row is a key that
    # is gone from values.yaml, or one that lost its comment.
    extra = {k for k in listed - documented if not any(k.startswith(f"{d}.") for d in documented)}
    assert not extra, f"README.md lists keys values.yaml does not document: {extra}"


def test_readme_is_what_helm_docs_generates() -> None:
    binary = helm_docs()
    if binary is None:
        pytest.skip("helm-docs is not installed (`make chart-readme` installs it from the Go module proxy)")
    result = subprocess.run([binary, "--chart-search-root", str(CHART.parent),
                             "--chart-to-generate", str(CHART), "--dry-run", "--log-level", "error"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (CHART / "README.md").read_text(), \
        "charts/kubetune/README.md is stale: run `make chart-readme`"


def test_readme_says_what_the_chart_needs_and_names_no_file_of_a_checkout() -> None:
    text = (CHART / "README.md").read_text()
    assert "Kubernetes: `>=1.28.0-0`" in text
    assert "admissionPolicy.enabled=false" in text and "1.30" in text
    assert not re.search(r"\b(examples|docs|hack|trainer_image)/", text)
