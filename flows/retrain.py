"""The `retrain` flow: a challenger on the recent accepted batches, through the promotion gate.

Wiring only. The same tasks as the train flow (split -> fit -> evaluate -> champion on the same
holdout -> gate -> report), with two differences:

- the window is the accepted batches (validated and scored, never quarantined) of the last
  ``retrain.window_days`` days, not whatever lies in incoming/;
- with ``retrain.exclude_flagged`` the rows the champion flagged are left out of the *training*
  rows (after the split, so the holdout the gate compares on is untouched), except those analysts
  marked false positives; rows analysts confirmed as anomalies are always left out
  (``feedback.*``, tasks.row_filter).

Every run records why it ran (the trigger: drift, model age, flag precision from analysts'
feedback, the weekly schedule or a person) and
why the challenger was promoted or kept, in ``<root>/reports/<dataset>/<run>/retrain.json``, in the
registry (the challenger's entry and champion.json's history) and as a Prefect artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.config import PipelineConfig, load_config, storage_of
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from flows.train import train_evaluate_gate
from tasks.drift import ensure_reference_task
from tasks.evaluate import new_run_id
from tasks.events import emit, retrain_skipped
from tasks.io import Storage
from tasks.records import RetrainRecord, RetrainWindow
from tasks.registry import champion_task
from tasks.row_filter import RowFilter
from tasks.run_reports import announce_retrain, publish_retrain_task
from tasks.window import nothing_to_retrain_on, training_window_task


def ensure_drift_reference(cfg: PipelineConfig, storage: Storage, version: str) -> dict[str, Any]:
    """The drift reference profile of model ``version`` with the config's drift settings, built
    from its training batches if it does not exist yet."""
    return ensure_reference_task(
        storage=storage,
        version=version,
        columns=cfg.columns,
        drift=cfg.drift,
        seed=cfg.training.seed,
    )


@flow(name="aeflow-retrain", log_prints=True, **API_WATCH_HOOKS)
def retrain_flow(
    config: str,
    until: str | None = None,
    trigger: str = "manual",
    trigger_reasons: list[str] | None = None,
    exclude_flagged: bool | None = None,
    promote: bool = True,
) -> dict[str, Any]:
    """Train a challenger on the accepted batches of the last ``retrain.window_days`` days up to
    ``until`` (YYYY-MM-DD; the newest accepted batch by default) and promote it only through the
    gate. ``trigger`` says why (drift, model_age, feedback, schedule, manual) and ``trigger_reasons`` the
    details; ``exclude_flagged`` overrides ``retrain.exclude_flagged``; ``promote=False`` records
    the gate's decision without applying it. Returns the retraining record.
    """
    logger = get_run_logger()
    cfg = load_config(config)
    check_config_columns(cfg, against_model=False, suite_required=False)
    storage = storage_of(cfg)
    window_days = cfg.retrain.window_days or cfg.training.window_days
    leave_out_flagged = cfg.retrain.exclude_flagged if exclude_flagged is None else exclude_flagged
    champion_before = champion_task(storage)
    window = training_window_task(storage=storage, window_days=window_days, until=until)
    record = RetrainRecord(
        dataset=cfg.dataset,
        run=new_run_id(),
        trigger=trigger,
        trigger_reasons=list(trigger_reasons or []),
        champion_before=champion_before,
        window=RetrainWindow.of(
            window,
            days=window_days,
            until=until,
            exclude_flagged=leave_out_flagged,
            exclude_confirmed=cfg.feedback.exclude_confirmed,
            keep_false_positives=cfg.feedback.keep_false_positives,
        ),
    )
    if not window:
        reason = nothing_to_retrain_on(until, window_days)
        # Not an error: an empty window is a normal state (a new dataset, a quiet period).
        logger.info("retraining skipped: %s", reason)
        skipped = record.replace(skipped_reason=reason)
        stored = publish_retrain_task(skipped, storage)
        emit(retrain_skipped(skipped))
        announce_retrain(stored)
        return stored

    trained = train_evaluate_gate(
        cfg,
        storage,
        window,
        promote=promote,
        run=record.run,
        row_filter=RowFilter(
            window=window,
            leave_out_flagged=leave_out_flagged,
            leave_out_confirmed=cfg.feedback.exclude_confirmed,
            keep_false_positives=cfg.feedback.keep_false_positives,
        ),
        gate_context={"trigger": trigger},
    )
    if trained.gate.promoted:
        # The new champion's drift reference, built now while its training batches are at hand.
        ensure_drift_reference(cfg, storage, trained.model.version)
    retrained = record.replace(trained=trained)
    stored = publish_retrain_task(retrained, storage)
    announce_retrain(stored)
    logger.info(
        "retrained %s (trigger %s): %s; %s",
        trained.model.version,
        trigger,
        "promoted" if trained.gate.promoted else "kept as challenger",
        stored["reason"],
    )
    return stored
