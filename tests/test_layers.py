"""The layers of README's Layout, as import-linter contracts (pyproject.toml), hold on the tree
and break when a forbidden import is added, even one inside a function body."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_tree(target: Path) -> Path:
    for package in ("core", "flows", "api", "cli"):
        shutil.copytree(REPO / package, target / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", target / "pyproject.toml")
    return target


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code + "\n")


INJECTED = {
    "core starts a flow itself": (
        "core/services/portfolios.py",
        "def _start_directly() -> None:\n    from flows.onboarding import onboarding\n\n"
        "    onboarding()",
        "core imports neither flows, api nor cli"),
    "the math reads the database": (
        "core/risk/stress.py",
        "def _rows() -> None:\n    import core.repositories.prices  # noqa: F401",
        "the math (factors, risk, portfolio, performance, metrics) does no I/O"),
    "an API controller imports a flow": (
        "api/portfolios/controllers.py",
        "def _nightly() -> None:\n    import flows.portfolio_refresh  # noqa: F401",
        "api imports flows only through api.launch"),
    "a flow imports the API": (
        "flows/symbol_batch.py", "def _app() -> None:\n    import api.app  # noqa: F401",
        "flows import neither api nor cli"),
    "a loop between two core modules": (
        "core/symbols.py", "def _loop() -> None:\n    import core.symbol_steps  # noqa: F401",
        "no import loops between sibling modules"),
}


def _broken(stdout: str) -> set[str]:
    """The names of the broken contracts: the headings of the report's last section."""
    lines = stdout.split("Broken contracts", 1)[-1].splitlines()
    return {line for line, under in zip(lines, lines[1:], strict=False)
            if line and set(under) == {"-"} and len(under) == len(line)}


def _contract(prefix: str) -> str:
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (name,) = [c["name"] for c in contracts["contracts"] if c["name"].startswith(prefix)]
    return str(name)


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("case", sorted(INJECTED))
def test_a_forbidden_import_breaks_its_contract(case: str, tmp_path: Path) -> None:
    module, code, contract = INJECTED[case]
    tree = _copy_tree(tmp_path)
    _append(tree / module, code)
    result = _lint(tree)
    assert result.returncode != 0
    assert _contract(contract) in _broken(result.stdout), result.stdout  # (others may follow)
