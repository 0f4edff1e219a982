"""The `feedback` flow: analysts' verdicts on scored rows, recorded once (what `aeflow feedback add`
does, as a flow a deployment, an automation or another system can run with JSON parameters).

Wiring only: the config's storage and columns -> record-feedback task -> the stored submission.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.config import load_config, storage_of
from flows.prefect_api import API_WATCH_HOOKS
from tasks.feedback import read_id_rows, record_feedback_task
from tasks.records import VerdictSubmission


@flow(name="aeflow-feedback", log_prints=True, **API_WATCH_HOOKS)
def feedback_flow(
    config: str,
    verdict: str,
    rows: list[list[str]] | str,
    note: str | None = None,
    analyst: str | None = None,
    submission_id: str | None = None,
) -> dict[str, Any]:
    """Record ``verdict`` ("confirmed" or "false_positive") on ``rows``: ``[batch_id, row_id]``
    pairs, or the path of an ids file (CSV with batch_id and the id column, or Parquet). The same
    submission twice is recorded once (``submission_id`` names it; default: a hash of the
    content). Returns the stored submission (tasks.records.FeedbackSubmission as a dict)."""
    cfg = load_config(config)
    storage = storage_of(cfg)
    if isinstance(rows, str):
        rows = read_id_rows(rows, id_column=cfg.columns.id)
    submission = VerdictSubmission(
        verdict=verdict,
        rows=[[str(batch_id), str(row_id)] for batch_id, row_id in rows],
        note=note,
        analyst=analyst,
        submission_id=submission_id,
    )
    recorded = record_feedback_task(submission, storage=storage, columns=cfg.columns)
    get_run_logger().info(
        "%s %d %s verdict(s) as %s",
        "recorded" if recorded.status == "recorded" else "already had",
        recorded.rows,
        recorded.verdict,
        recorded.submission_id,
    )
    return recorded.to_dict()
