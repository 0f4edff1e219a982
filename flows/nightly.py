"""The `nightly` flow: score tonight's batches with the champion, measure drift, retrain when a
trigger fires.

Wiring only: every step is a task in tasks/. One night is::

    list incoming -> tonight's batches (a date, or everything not scored yet)
      -> validate each -> quarantine or score (exactly once per batch) -> score summary
      -> drift of each scored batch against the champion's training reference -> drift report
      -> flag precision from analysts' verdicts (tasks.flag_precision)
      -> retraining triggers (drift, champion age, feedback) -> event aeflow.drift.detected when
         a batch drifted -> `retrain` subflow when a trigger fires
      -> nightly summary (JSON under <root>/reports/<dataset>/nightly/ and a Prefect artifact)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, unmapped

from flows.config import load_config, storage_of
from flows.errors import raise_failures
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from flows.retrain import ensure_drift_reference, retrain_flow
from flows.score import batch_id_of, summarize_run, validate_and_score
from tasks.drift import measure_drift_task, retrain_triggers_task
from tasks.events import drift_detected, drift_retraining, emit
from tasks.flag_precision import champion_precision, flag_precision_task
from tasks.io import scan_incoming_task
from tasks.records import DriftReport, NightlyRecord
from tasks.registry import champion_challenged_at_task, champion_task, resolve_version_task
from tasks.run_reports import announce_nightly, publish_drift_task, publish_nightly_task
from tasks.window import select_nightly_batches_task


@flow(name="aeflow-nightly", log_prints=True, **API_WATCH_HOOKS)
def nightly_flow(config: str, date: str | None = None, retrain: bool = True) -> dict[str, Any]:
    """One night: score the night's batches (those dated ``date``, YYYY-MM-DD, by
    ``columns.batch_date``; or every batch not scored yet) with the champion, measure their drift,
    and retrain when drift, the champion's age or its flag precision from analysts' verdicts
    (below ``feedback.precision_floor``) calls for it (unless ``retrain`` is false).
    Returns the night's summary.
    """
    logger = get_run_logger()
    cfg = load_config(config)
    check_config_columns(cfg)
    storage = storage_of(cfg)
    night = date or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")

    scan = scan_incoming_task.with_options(**storage.retry_options())(storage)
    selected = select_nightly_batches_task(
        scan.batches, storage=storage, columns=cfg.columns, date=date
    )
    pending, scored_before = selected.pending, selected.scored_before
    version = (
        resolve_version_task(storage, None) if pending or scored_before else champion_task(storage)
    )
    processed = validate_and_score(
        cfg, storage, pending, model_version=version or "", rejected=scan.rejected
    )
    score = summarize_run(
        cfg,
        model_version=version or "none",
        results=processed,
        skipped_before=scored_before,
        ignored=scan.ignored,
    )
    scored_before = sorted([*scored_before, *processed.skipped], key=batch_id_of)

    # Drift is measured for every batch of the night scored by the current champion (also one
    # scored by an earlier run of this night); the reference is that model's training data.
    to_measure = [
        m
        for m in [*processed.scored, *scored_before]
        if getattr(m, "model_version", None) == version
    ]
    drift_reports: list[DriftReport] = []
    if to_measure:
        profile = ensure_drift_reference(cfg, storage, version)
        drift_reports = measure_drift_task.map(
            marker=to_measure,
            profile=unmapped(profile),
            storage=unmapped(storage),
            columns=unmapped(cfg.columns),
            drift=unmapped(cfg.drift),
            chunk_rows=unmapped(cfg.scoring.chunk_rows),
        ).result()
        for report in drift_reports:
            if report.drifted:
                logger.warning("drift in %s: %s", report.batch_id, "; ".join(report.reasons))
    publish_drift_task(cfg.dataset, drift_reports)

    # Analysts' verdicts so far: the champion's flag precision (the feedback trigger) and the
    # precision over time for the night's summary.
    feedback = flag_precision_task(
        storage, feedback=cfg.feedback, model_version=version, until=date
    )
    precision = champion_precision(feedback)
    since = champion_challenged_at_task(storage, version) if version else None
    decision = retrain_triggers_task(drift_reports, since, cfg.retrain, precision)
    retraining = drift_retraining(
        on_drift=cfg.retrain.on_drift, retrains_in_run=decision.retrain and retrain
    )
    emit(drift_detected(cfg.dataset, drift_reports, retraining=retraining))
    retrained = None
    if decision.retrain and retrain:
        # The window ends with the night: its date, or the newest event date among its batches.
        until = date or max((m.date for m in to_measure), default=None)
        retrained = retrain_flow(
            config=config,
            until=until,
            trigger="+".join(decision.triggers),
            trigger_reasons=decision.reasons,
        )
    record = NightlyRecord(
        dataset=cfg.dataset,
        night=night,
        date=date,
        model_version=version,
        score=score,
        scored_before=[batch_id_of(m) for m in scored_before],
        drift=drift_reports,
        retrain_decision=decision,
        feedback=feedback,
        retrain=retrained,
        champion_after=champion_task(storage),
        failures=processed.failures,
    )
    result = publish_nightly_task(record, storage)
    announce_nightly(result)
    raise_failures(processed.failures, processed.errors, processed.committed)
    return result
