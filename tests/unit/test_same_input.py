"""A day's batch delivered twice under two names (``2026-02-10.parquet`` and a resent copy): both
are batches and both are scored, so their rows are in scored/ twice. The run summary names the
copies and the command line says what to do, instead of duplicating the rows silently."""

from __future__ import annotations

from flows.cli import format_score_summary
from tasks.records import ScoreMarker
from tasks.report.run_summary import RunBatches, summarize_score_run


def _marker(batch_id: str, sha: str, status: str = "scored") -> ScoreMarker:
    return ScoreMarker(batch_id, status, 100, 100, 1, "v1", input_sha256=sha)


def test_batches_with_the_same_bytes_are_named_as_copies():
    scored = [_marker("2026-02-10-resent", "aa"), _marker("2026-02-11", "bb")]
    scored.append(_marker("2026-02-12", "cc"))
    skipped = [_marker("2026-02-10", "aa", "skipped"), _marker("2026-02-09", "dd", "skipped")]
    summary = summarize_score_run("shop", "v1", RunBatches(scored=scored, skipped=skipped))
    assert summary["same_input"] == [{"batch_id": "2026-02-10-resent", "same_as": ["2026-02-10"]}]
    text = format_score_summary(summary, "/r/scored/shop", "/r/quarantine/shop")
    (line,) = [row for row in text.splitlines() if row.startswith("same input")]
    assert "2026-02-10-resent" in line and "2026-02-10" in line and "twice" in line


def test_two_copies_scored_in_one_run_name_each_other_once():
    scored = [_marker("a", "aa"), _marker("b", "aa"), _marker("c", "cc")]
    summary = summarize_score_run("shop", "v1", RunBatches(scored=scored))
    assert summary["same_input"] == [{"batch_id": "b", "same_as": ["a"]}]
