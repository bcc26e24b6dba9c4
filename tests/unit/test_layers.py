"""The layout by role holds: every import-linter contract in pyproject.toml is kept (the
in-trial SDK's imports, the roles' independence, the pure core's lack of I/O, the layers
inside the operator), and no module grows past 400 lines."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "kubetune"
MAX_MODULE_LINES = 400


def _contract_names() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["name"] for c in config["tool"]["importlinter"]["contracts"]]


def test_every_import_contract_is_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    names = _contract_names()
    for name in names:
        assert f"{name} KEPT" in result.stdout, f"{name!r} not reported kept:\n{result.stdout}"
    assert f"Contracts: {len(names)} kept, 0 broken." in result.stdout


def test_the_role_contracts_are_declared() -> None:
    names = " | ".join(_contract_names()).lower()
    for needle in ("in-trial sdk", "independent", "pure core does no i/o", "layers inside the operator"):
        assert needle in names


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules: {long}"
