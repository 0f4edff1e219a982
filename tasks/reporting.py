"""Run summaries: the numbers a person checks after a run, as JSON and as Prefect artifacts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.fit_checks import flag_rate_warning
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
    threshold_method: str | None = None,
    threshold_value: float | None = None,
) -> dict[str, Any]:
    """Totals of a score run. ``rows_in`` counts every row seen in this run, so
    rows_in == rows_scored + rows_quarantined holds for each run (skipped batches are not seen).

    ``flag_warnings`` (one line each) name a scored batch, or the run, whose flag rate is 0 or far
    from the threshold rule's target (``threshold_method``/``threshold_value``, see
    :func:`tasks.fit_checks.flag_rate_warning`).
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
        "flag_warnings": _flag_warnings(scored, threshold_method, threshold_value),
    }


def _flag_warnings(
    scored: Sequence[dict[str, Any]], method: str | None, value: float | None
) -> list[str]:
    """Per scored batch, and for the whole run when it scored several."""
    found = []
    for marker in scored:
        warning = flag_rate_warning(
            int(marker["flagged"]), int(marker["rows_out"]), method, value,
            f"batch {marker['batch_id']}",
        )  # fmt: skip
        if warning:
            found.append(warning)
    if len(scored) > 1:
        flagged = sum(int(m["flagged"]) for m in scored)
        rows = sum(int(m["rows_out"]) for m in scored)
        overall = flag_rate_warning(flagged, rows, method, value, "this run's scored rows")
        if overall:
            found.append(overall)
    return found


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
    if summary.get("flag_warnings"):
        lines += ["", "## Flag rate", ""]
        lines += [f"- {w}" for w in summary["flag_warnings"]]
    return "\n".join(lines) + "\n"


@task(name="score-run-summary", cache_policy=NO_CACHE)
def score_summary_task(
    dataset: str,
    model_version: str,
    scored: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    quarantined: list[dict[str, Any]],
    warnings: list[dict[str, Any]],
    threshold_method: str | None = None,
    threshold_value: float | None = None,
) -> dict[str, Any]:
    summary = summarize_score_run(
        dataset, model_version, scored, skipped, quarantined, warnings,
        threshold_method, threshold_value,
    )  # fmt: skip
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


# The counts a run's result event carries (see publish_result).
RESULT_KEYS = (
    "model_version",
    "batches_scored",
    "batches_skipped",
    "batches_quarantined",
    "rows_in",
    "rows_scored",
    "rows_quarantined",
    "rows_flagged",
)


def score_line(summary: dict[str, Any]) -> str:
    """A score run in one line: batches scored / skipped / quarantined and rows flagged."""
    return (
        f"{summary['batches_scored']} scored, {summary['batches_skipped']} already scored, "
        f"{summary['batches_quarantined']} quarantined; {summary['rows_flagged']} of "
        f"{summary['rows_scored']} rows flagged ({summary['flagged_share']:.2%})"
    )


def publish_result(kind: str, dataset: str, line: str, payload: dict[str, Any]) -> None:
    """Say what a flow run did in one line, as its last log line and as a Prefect event
    ``aeflow.<kind>.finished`` whose resource name is that line (so `prefect deployment run
    --watch` ends with the result, not only with the run's state). No-op outside a run."""
    from prefect.context import FlowRunContext
    from prefect.events import emit_event

    if FlowRunContext.get() is None:
        return
    from prefect import get_run_logger

    get_run_logger().info("result: %s", line)
    emit_event(
        event=f"aeflow.{kind}.finished",
        resource={
            "prefect.resource.id": f"aeflow.dataset.{dataset}",
            "prefect.resource.name": line,
        },
        payload=payload,
    )
