"""User values in reports and Prefect artifacts render as text, never as markup (issue 12,
defect 8): batch ids, column names, category values and messages come from the data."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from tasks.records import DriftReport
from tasks.report.run_summary import RunBatches, score_summary_markdown, summarize_score_run
from tasks.run_reports import drift_markdown
from tasks.validation import ValidationOutcome

HOSTILE = [
    "[click](javascript:alert(1))",
    "![x](http://e.example/t.png)",
    "<img src=x onerror=alert(1)>",
    "a|b",
    "`code` and ``more``",
    "**bold** _em_ ~~gone~~",
    "line\nbreak # heading",
    "# heading at the start",
    "&lt;entity&gt;",
]


def html(markdown: str) -> str:
    """As a CommonMark renderer with tables and raw HTML enabled (Prefect's UI) renders it."""
    return (
        MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)
    )


def assert_no_markup_from(rendered: str) -> None:
    for tag in ("<a ", "<img", "<strong>bold", "<em>em", "<s>"):
        assert tag not in rendered, tag
    assert not re.search(r"<h\d>[^<]*heading", rendered)  # no value started a heading


@pytest.mark.parametrize("value", HOSTILE)
def test_the_quarantine_report_renders_hostile_values_as_text(value):
    failure = {
        "type": "precheck.readable",
        "column": value,
        "severity": "critical",
        "expected": value,
        "observed": value,
        "unexpected_count": 1,
        "sample_values": [value],
        "sample_ids": [value],
        "why": value,
    }
    outcome = ValidationOutcome(value, "quarantined", False, 3, [failure], reason=value)
    rendered = html(outcome.report_markdown())
    assert_no_markup_from(rendered)
    rows = re.findall(r"<tr>(.*?)</tr>", rendered, flags=re.S)
    assert [row.count("<td") for row in rows[1:]] == [6]  # the table kept its 6 columns


@pytest.mark.parametrize("value", HOSTILE)
def test_the_run_summary_artifact_renders_hostile_values_as_text(value):
    batches = RunBatches(
        scored=[{"batch_id": value, "rows_in": 2, "rows_out": 2, "flagged": 1, "output": value}],
        quarantined=[{"batch_id": value, "rows": None, "reason": value, "quarantine_dir": value}],
        warnings=[{"batch_id": value, "reason": value}],
    )
    summary = summarize_score_run("ds", "v1", batches, ignored=[{"path": value, "reason": value}])
    rendered = html(score_summary_markdown(summary))
    assert_no_markup_from(rendered)
    for row in re.findall(r"<tr>(.*?)</tr>", rendered, flags=re.S):
        assert row.count("<td") in (0, 2, 4, 9)  # every row has its table's column count


def test_the_drift_artifact_renders_hostile_columns_and_categories_as_text():
    value = HOSTILE[0] + HOSTILE[2]
    report = {
        "batch_id": value,
        "status": "drift",
        "drifted_columns": [value],
        "reasons": [value],
        "score": {"psi": 0.3},
        "flag_rate": {"batch": 0.1, "reference": 0.05},
        "reference_version": value,
        "columns": [
            {
                "column": value,
                "psi": 0.4,
                "status": "drift",
                "largest_shift": {"bin": value, "reference_share": 0.1, "batch_share": 0.5},
            }
        ],
    }
    rest = {
        "dataset": "demo", "drifted": True, "rows": 1, "rows_scored": 1, "warned_columns": [],
        "thresholds": {}, "report": "",
    }  # fmt: skip
    assert_no_markup_from(html(drift_markdown(value, [DriftReport.from_dict({**report, **rest})])))
