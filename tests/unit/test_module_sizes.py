"""No module in flows/, tasks/ or models/ grows past 600 lines: a module that does several jobs
is split by job (docs/architecture.md), and this keeps it so."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "tasks", "models")
MAX_LINES = 600


def module_lines() -> dict[str, int]:
    return {
        path.relative_to(REPO_ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for package in PACKAGES
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
    }


def test_the_packages_hold_modules():
    assert len(module_lines()) > 30


@pytest.mark.parametrize("module", sorted(module_lines()))
def test_no_module_is_over_600_lines(module):
    lines = module_lines()[module]
    assert lines <= MAX_LINES, (
        f"{module} has {lines} lines (limit {MAX_LINES}): split it by job into modules of their "
        "own (docs/architecture.md, 'where each concern lives')"
    )
