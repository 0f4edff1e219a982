"""Run summaries: the numbers a person checks after a run, as JSON and as Prefect artifacts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.io import StorageOptions, write_json_atomic


def artifact_key(dataset: str, kind: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only) for a dataset."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{dataset.lower()}-{kind}").strip("-")


def summarize_score_run(
    dataset: str,
    model_version: str,
    scored: Sequence[dict[str, Any]],
    skipped: Sequence[dict[str, Any]],
    quarantined: Sequence[dict[str, Any]],
    warnings: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Totals of a score run. ``rows_in`` counts every row seen in this run, so
    rows_in == rows_scored + rows_quarantined holds for each run (skipped batches are not seen).
    """
    rows_scored = sum(int(m["rows_out"]) for m in scored)
    rows_quarantined = sum(int(q.get("rows", 0)) for q in quarantined)
    rows_in = sum(int(m["rows_in"]) for m in scored) + rows_quarantined
    flagged = sum(int(m["flagged"]) for m in scored)
    return {
        "dataset": dataset,
        "model_version": model_version,
        "batches_scored": len(scored),
        "batches_skipped": len(skipped),
        "batches_quarantined": len(quarantined),
        "batches_with_warnings": len(warnings),
        "rows_in": rows_in,
        "rows_scored": rows_scored,
        "rows_quarantined": rows_quarantined,
        "rows_flagged": flagged,
        "flagged_share": flagged / rows_scored if rows_scored else 0.0,
        "scored": list(scored),
        "skipped": [s["batch_id"] for s in skipped],
        "quarantined": list(quarantined),
        "warnings": list(warnings),
    }


def score_summary_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# Score run: {summary['dataset']}",
        "",
        f"Model version: `{summary['model_version']}`",
        "",
        "| batches scored | skipped (already scored) | quarantined | rows in | rows scored | rows quarantined | rows flagged | flagged share |",
        "|---|---|---|---|---|---|---|---|",
        f"| {summary['batches_scored']} | {summary['batches_skipped']} | {summary['batches_quarantined']} "
        f"| {summary['rows_in']} | {summary['rows_scored']} | {summary['rows_quarantined']} "
        f"| {summary['rows_flagged']} | {summary['flagged_share']:.2%} |",
    ]
    if summary["scored"]:
        lines += [
            "",
            "## Scored batches",
            "",
            "| batch | rows | flagged | output |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {m['batch_id']} | {m['rows_out']} | {m['flagged']} | `{m['output']}` |"
            for m in summary["scored"]
        ]
    if summary["quarantined"]:
        lines += [
            "",
            "## Quarantined batches",
            "",
            "| batch | rows | reason | folder |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {q['batch_id']} | {q.get('rows', 0)} | {q.get('reason', '')} | `{q.get('quarantine_dir', '')}` |"
            for q in summary["quarantined"]
        ]
    if summary["warnings"]:
        lines += ["", "## Scored with warnings", ""]
        lines += [f"- {w['batch_id']}: {w.get('reason', '')}" for w in summary["warnings"]]
    return "\n".join(lines) + "\n"


@task(name="score-run-summary", cache_policy=NO_CACHE)
def score_summary_task(
    dataset: str,
    model_version: str,
    scored: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    quarantined: list[dict[str, Any]],
    warnings: list[dict[str, Any]],
) -> dict[str, Any]:
    summary = summarize_score_run(dataset, model_version, scored, skipped, quarantined, warnings)
    create_markdown_artifact(
        markdown=score_summary_markdown(summary),
        key=artifact_key(dataset, "score-summary"),
        description=f"aeflow score run summary for {dataset}",
    )
    return summary


@task(name="publish-record", cache_policy=NO_CACHE)
def publish_record_task(
    record: dict[str, Any],
    url: str,
    markdown: str,
    key: str,
    description: str,
    options: StorageOptions = None,
) -> str:
    """Store a run's record as JSON at ``url`` and publish its Markdown as a Prefect artifact."""
    write_json_atomic(record, url, options)
    create_markdown_artifact(markdown=markdown, key=key, description=description)
    return url
