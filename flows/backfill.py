"""The `backfill` flow: re-score the batches of a date range with a chosen model version.

Wiring only. Each batch in incoming/ dated in [start, end] (its date: ``columns.batch_date``, see
tasks/batch_dates.py) is validated and scored with the version (the champion by default). A batch
already scored by that version (same input checksum) is skipped unless ``force``; any other output
of the batch is replaced, never appended to, so a backfill can be run again safely.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.config import load_config, storage_of
from flows.errors import raise_failures
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from flows.score import summarize_run, validate_and_score
from tasks.io import list_batches_task
from tasks.run_reports import announce_score
from tasks.scoring import find_pending_batches_task
from tasks.window import select_date_range_task


@flow(name="aeflow-backfill", log_prints=True, **API_WATCH_HOOKS)
def backfill_flow(
    config: str,
    start: str,
    end: str,
    model_version: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Re-score the batches dated ``start``..``end`` (YYYY-MM-DD, inclusive) with
    ``model_version`` (the champion when None). Returns the run summary of the score flow's shape.
    """
    cfg = load_config(config)
    check_config_columns(cfg, model_version)
    storage = storage_of(cfg)
    available = list_batches_task(storage)
    in_range = select_date_range_task(
        available, start=start, end=end, storage=storage, columns=cfg.columns
    )
    plan = find_pending_batches_task(
        batches=in_range, storage=storage, model_version=model_version, force=force
    )
    results = validate_and_score(
        cfg, storage, plan.pending, model_version=plan.model_version, force=force
    )
    summary = summarize_run(
        cfg, model_version=plan.model_version, results=results, skipped_before=plan.skipped
    )
    announce_score(
        "backfill", summary, action=f"backfill {start}..{end}", failed=len(results.failures)
    )
    raise_failures(results.failures, results.errors, results.committed)
    return {**summary, "start": start, "end": end}
