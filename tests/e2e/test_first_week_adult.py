"""A team's first week on UCI Adult (../shared/datasets, skipped when absent): headerless,
', '-separated, no timestamp, production exports without the label. The story and its checks are
in tests/first_week_support.py; test_first_week.py runs it on a generated table.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest
from first_week_support import HISTORY_DAYS, QUICK, ROWS, Week, assert_the_week, run_week

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


def adult_week(datasets: Path) -> Week:
    """UCI Adult: headerless, ', '-separated, no timestamp; production lines lack `income`."""
    data = tomllib.loads((REPO_ROOT / "configs" / "adult.toml").read_text())
    config = {**data, "storage": {"root": "data"}, "validation": {"suite": "adult.json"}, **QUICK}
    train_lines = (datasets / "adult" / "adult.data").read_text().splitlines()
    test_lines = [
        line for line in (datasets / "adult" / "adult.test").read_text().splitlines()[1:] if line
    ]

    def export(index: int, folder: Path) -> Path:
        if index < 0:
            path, lines = folder / "adult-history.data", train_lines[: HISTORY_DAYS * ROWS]
        else:
            start = (index - HISTORY_DAYS) * ROWS
            # the production export: the same layout without its last field, the label
            lines = [line.rsplit(",", 1)[0] for line in test_lines[start : start + ROWS]]
            path = folder / f"adult-export-{index}.data"
        path.write_text("\n".join(lines) + "\n")
        return path

    return Week("adult", config, export, dt.date(2026, 1, 5))


def test_a_first_week_on_adult(tmp_path, prefect_api, shared_datasets):
    out = run_week(adult_week(shared_datasets), tmp_path, prefect_api)
    assert_the_week(out, "adult")
