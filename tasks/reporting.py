"""Run summaries: the numbers a person checks after a run, as JSON and as Prefect artifacts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.io import StorageOptions, write_json_atomic
from tasks.markdown import md_code, md_text


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
    ignored: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Totals of a score run. ``rows_in`` counts every row seen in this run, so
    rows_in == rows_scored + rows_quarantined holds for each run (skipped batches are not seen).

    A quarantined batch whose row count is unknown (its Parquet footer cannot be read) makes
    ``rows_quarantined`` and ``rows_in`` None (unknown), never a silent under-count; the ``*_known``
    fields keep the sum of the known counts and ``rows_unknown`` names those batches. ``ignored``:
    the paths under incoming/ that are not batches, each with its reason.
    """
    rows_scored = sum(int(m["rows_out"]) for m in scored)
    unknown = [q["batch_id"] for q in quarantined if q.get("rows") is None]
    quarantined_known = sum(int(q["rows"]) for q in quarantined if q.get("rows") is not None)
    rows_in_known = sum(int(m["rows_in"]) for m in scored) + quarantined_known
    flagged = sum(int(m["flagged"]) for m in scored)
    return {
        "dataset": dataset,
        "model_version": model_version,
        "batches_scored": len(scored),
        "batches_skipped": len(skipped),
        "batches_quarantined": len(quarantined),
        "batches_with_warnings": len(warnings),
        "rows_in": None if unknown else rows_in_known,
        "rows_in_known": rows_in_known,
        "rows_scored": rows_scored,
        "rows_quarantined": None if unknown else quarantined_known,
        "rows_quarantined_known": quarantined_known,
        "rows_unknown": unknown,
        "rows_flagged": flagged,
        "flagged_share": flagged / rows_scored if rows_scored else 0.0,
        "scored": list(scored),
        "skipped": [s["batch_id"] for s in skipped],
        "quarantined": list(quarantined),
        "warnings": list(warnings),
        "ignored": list(ignored),
    }


def rows_text(summary: dict[str, Any], key: str) -> str:
    """``summary[key]`` for people: the number, or "unknown (>= N; ...)" when a count is unknown."""
    value = summary.get(key)
    if value is not None:
        return str(value)
    known = summary.get(f"{key}_known", 0)
    batches = summary.get("rows_unknown") or []
    return f"unknown (>= {known}; row count unreadable for {', '.join(map(str, batches))})"


def score_summary_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# Score run: {md_text(summary['dataset'])}",
        "",
        f"Model version: {md_code(summary['model_version'])}",
        "",
        "| batches scored | skipped (already done) | quarantined | rows in | rows scored | rows quarantined | rows flagged | flagged share | inputs ignored |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {summary['batches_scored']} | {summary['batches_skipped']} | {summary['batches_quarantined']} "
        f"| {md_text(rows_text(summary, 'rows_in'))} | {summary['rows_scored']} "
        f"| {md_text(rows_text(summary, 'rows_quarantined'))} "
        f"| {summary['rows_flagged']} | {summary['flagged_share']:.2%} "
        f"| {len(summary.get('ignored') or [])} |",
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
            f"| {md_text(m['batch_id'])} | {m['rows_out']} | {m['flagged']} "
            f"| {md_code(m['output'], in_table=True)} |"
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
            f"| {md_text(q['batch_id'])} | {'unknown' if q.get('rows') is None else q['rows']} "
            f"| {md_text(q.get('reason', ''))} "
            f"| {md_code(q.get('quarantine_dir', ''), in_table=True)} |"
            for q in summary["quarantined"]
        ]
    if summary["warnings"]:
        lines += ["", "## Scored with warnings", ""]
        lines += [
            f"- {md_text(w['batch_id'])}: {md_text(w.get('reason', ''))}"
            for w in summary["warnings"]
        ]
    if summary.get("ignored"):
        lines += ["", "## Ignored (not batches)", "", "| path | reason |", "|---|---|"]
        lines += [
            f"| {md_code(i['path'], in_table=True)} | {md_text(i['reason'])} |"
            for i in summary["ignored"]
        ]
    return "\n".join(lines) + "\n"


@task(name="score-run-summary", cache_policy=NO_CACHE)
def score_summary_task(
    dataset: str,
    model_version: str,
    scored: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    quarantined: list[dict[str, Any]],
    warnings: list[dict[str, Any]],
    ignored: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    summary = summarize_score_run(
        dataset, model_version, scored, skipped, quarantined, warnings, ignored or []
    )
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
