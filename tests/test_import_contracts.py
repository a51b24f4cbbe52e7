"""Issue 11: the import contracts in pyproject.toml ([tool.importlinter]) hold, and they can
fail: a copy of the code with one deliberate violation breaks the contract that forbids it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
# The `lint-imports` command, run by this interpreter (the project's venv).
LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(*args: str, cwd: Path, pythonpath: Path | None = None) -> tuple[int, str]:
    """Exit code and output of `lint-imports` with the project's contracts."""
    env = {**os.environ, "COLUMNS": "200"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--no-logo", *args, str(CONFIG)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr


def test_import_contracts_hold() -> None:
    code, output = lint_imports(cwd=ROOT)
    assert code == 0, output


# (contract id, module of the copy, the line added to it, the chain the contract must name)
VIOLATIONS = [
    (
        "areas",
        "accountgraph/accounts/models.py",
        "import accountgraph.billing.models",
        "accountgraph.accounts.models -> accountgraph.billing.models",
    ),
    (
        "area-privacy",
        "accountgraph/accounts/models.py",
        "import accountgraph.billing.models",
        "accountgraph.accounts.models -> accountgraph.billing.models",
    ),
    (
        "workers-on-top",
        "accountgraph/db.py",
        "from workers import settings",
        "accountgraph.db -> workers.settings",
    ),
    (
        "layers",
        "accountgraph/domain.py",
        "import accountgraph.schema",
        "accountgraph.domain -> accountgraph.schema",
    ),
]


@pytest.mark.parametrize(
    ("contract", "module", "line", "chain"),
    VIOLATIONS,
    ids=[f"{contract}:{line}" for contract, _, line, _ in VIOLATIONS],
)
def test_import_contracts_refuse_a_violation(
    tmp_path: Path, contract: str, module: str, line: str, chain: str
) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "static", "*.graphql")
    shutil.copytree(ROOT / "src" / "accountgraph", tmp_path / "accountgraph", ignore=ignore)
    shutil.copytree(ROOT / "workers", tmp_path / "workers", ignore=ignore)
    target = tmp_path / module
    assert target.is_file(), f"{module} is gone: pick another module for this case"

    _, before = lint_imports("--contract", contract, cwd=tmp_path, pythonpath=tmp_path)
    assert chain not in flat(before), before  # the copy is clean of it before ...

    target.write_text(f"{target.read_text()}\n{line}  # deliberate violation\n")
    code, after = lint_imports("--contract", contract, cwd=tmp_path, pythonpath=tmp_path)
    assert code == 1, after  # ... and broken by it after, with the chain named
    assert "0 kept, 1 broken" in flat(after) and chain in flat(after), after


def flat(output: str) -> str:
    """Whitespace collapsed, so that a chain wrapped over two lines still matches."""
    return " ".join(output.split())
