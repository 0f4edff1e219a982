"""The `backfill` flow: re-score the batches of a date range with a chosen model version.

Wiring only. Each batch in incoming/ dated in [start, end] (its date: ``columns.batch_date``, see
tasks/batch_dates.py) is validated and scored with the version (the champion by default). A batch
already scored by that version (same input checksum) is skipped unless ``force``; any other output
of the batch is replaced, never appended to, so a backfill can be run again safely.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from prefect import flow

from flows.config import load_config
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from flows.score import raise_failures, validate_and_score
from tasks.io import StorageLayout, list_batches_task
from tasks.reporting import RESULT_KEYS, publish_result, score_line, score_summary_task
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
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    opts = cfg.storage.options
    available = list_batches_task(layout.incoming, opts)
    in_range = select_date_range_task(
        available,
        start,
        end,
        layout.root,
        cfg.dataset,
        cfg.columns.batch_date,
        cfg.columns.timestamp,
        opts,
    )
    plan = find_pending_batches_task(in_range, layout.root, cfg.dataset, model_version, force, opts)
    processed = validate_and_score(cfg, layout, plan["pending"], plan["model_version"], force=force)
    summary = score_summary_task(
        cfg.dataset,
        plan["model_version"],
        processed["scored"],
        sorted([*plan["skipped"], *processed["skipped"]], key=itemgetter("batch_id")),
        processed["quarantined"],
        processed["warnings"],
        cfg.threshold.method,
        cfg.threshold.value,
    )
    failed = len(processed["failures"])
    publish_result(
        "backfill",
        cfg.dataset,
        f"{cfg.dataset} backfill {start}..{end} with {plan['model_version']}: "
        f"{score_line(summary)}" + (f"; {failed} failed to score" if failed else ""),
        {key: summary[key] for key in RESULT_KEYS},
    )
    raise_failures(processed)
    return {**summary, "start": start, "end": end}
