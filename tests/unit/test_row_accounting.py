"""Rows in = rows scored + rows quarantined, and an unknown count is reported as unknown, never as
0 (issue 12, defect 7); the bad part of a folder batch is named."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from model_support import validate_demo_batch as validate

from tasks.demo_data import generate_demo_data
from tasks.io import list_batches
from tasks.report.run_summary import RunBatches, rows_text, summarize_score_run


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    folder = tmp_path_factory.mktemp("day")
    generate_demo_data(
        folder, days=1, rows_per_day=1200, seed=8, drift_day=None, malformed_day=None
    )
    return next(folder.glob("*.parquet"))


def folder_batch(tmp_path: Path, day: Path) -> Path:
    """A folder batch of three 400-row parts."""
    folder = tmp_path / "incoming" / "2026-01-01"
    folder.mkdir(parents=True)
    table = pq.read_table(day)
    for index in range(3):
        pq.write_table(table.slice(400 * index, 400), folder / f"part-{index}.parquet")
    return folder


def test_a_truncated_part_is_named_and_the_rows_are_unknown_not_zero(tmp_path, day):
    folder = folder_batch(tmp_path, day)
    part = folder / "part-1.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    outcome = validate(list_batches(str(folder.parent))[0])
    assert not outcome.accepted
    assert outcome.rows is None  # 800 rows are readable, 400 are not: the total is unknown
    [failure] = outcome.critical
    assert failure["bad_parts"] == ["part-1.parquet"]
    assert "part(s) ['part-1.parquet'] of 3" in outcome.reason
    assert "rows: unknown" in outcome.report_markdown()


def test_damaged_data_behind_a_readable_footer_keeps_the_footers_count(tmp_path, day):
    folder = folder_batch(tmp_path, day)
    part = folder / "part-2.parquet"
    data = bytearray(part.read_bytes())
    start = len(data) // 4
    data[start : start + 2000] = b"\xff" * 2000  # column chunks damaged, footer intact
    part.write_bytes(bytes(data))
    outcome = validate(list_batches(str(folder.parent))[0])
    assert not outcome.accepted and outcome.rows == 1200
    assert outcome.critical[0]["bad_parts"] == ["part-2.parquet"]


def test_a_zero_byte_part_is_named_and_counts_as_unknown(tmp_path, day):
    folder = folder_batch(tmp_path, day)
    (folder / "part-0.parquet").write_bytes(b"")
    outcome = validate(list_batches(str(folder.parent))[0])
    assert outcome.rows is None and outcome.critical[0]["bad_parts"] == ["part-0.parquet"]


def test_a_run_summary_with_an_unknown_count_says_unknown_and_keeps_the_known_part():
    scored = [{"batch_id": "a", "rows_in": 300_001, "rows_out": 300_001, "flagged": 5}]
    quarantined = [{"batch_id": "b", "rows": None}, {"batch_id": "c", "rows": 10}]
    summary = summarize_score_run("ds", "v1", RunBatches(scored=scored, quarantined=quarantined))
    assert summary["rows_in"] is None and summary["rows_quarantined"] is None
    assert summary["rows_in_known"] == 300_011 and summary["rows_unknown"] == ["b"]
    assert rows_text(summary, "rows_in") == "unknown (>= 300011; row count unreadable for b)"
    complete = summarize_score_run(
        "ds", "v1", RunBatches(scored=scored, quarantined=quarantined[1:])
    )
    assert complete["rows_in"] == complete["rows_scored"] + complete["rows_quarantined"]
