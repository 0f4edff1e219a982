"""The `train` flow: training window -> validate -> split -> fit -> evaluate -> gate -> report.

Wiring only: every step is a task in tasks/. The flow takes the config file's path (a typed, JSON-able
parameter Prefect can show and schedule), builds the run's `Storage` once, and passes the settings
sections and typed records (tasks.records) to the tasks by keyword::

    [BatchRef] -> validate -> accepted [BatchRef]
      -> split_training_window_task -> TrainingSplit (train and holdout Parquet files under
         <root>/reports/<dataset>/<run>/)
      -> fit_model_task -> ModelReference (registered under <root>/models/<dataset>/<version>/)
      -> evaluate_task -> Evaluation; evaluate_champion_task -> ChampionEvaluation (same rows)
      -> gate_task -> GateDecision (recorded in the registry) -> report_task (HTML + metrics.json)
      -> record_report_task (the report's location, in the version's registry entry)
      -> TrainingRun (tasks.records): the flow's result
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger

from flows.config import PipelineConfig, load_config, storage_of, with_model_params
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from flows.score import validate_batches
from tasks.evaluate import evaluate_champion_task, evaluate_task, new_run_id
from tasks.gate import gate_task
from tasks.incoming import BatchRef
from tasks.io import Storage, list_batches_task
from tasks.records import ScoreMarker, TrainingRun
from tasks.registry import champion_task, record_report_task
from tasks.report import report_task
from tasks.row_filter import RowFilter, RowsLeftOut, filter_training_rows_task
from tasks.run_reports import announce_train
from tasks.training import (
    discard_training_split_task,
    fit_model_task,
    select_training_batches_task,
    split_training_window_task,
)


def train_evaluate_gate(
    cfg: PipelineConfig,
    storage: Storage,
    batches: Sequence[BatchRef | ScoreMarker],
    *,
    promote: bool = True,
    run: str | None = None,
    row_filter: RowFilter | None = None,
    gate_context: dict[str, Any] | None = None,
) -> TrainingRun:
    """Split, fit, evaluate, gate and report on already accepted batches (call it inside a flow;
    the retrain flow reuses it).

    ``batches``: references to the batches (their ``path``, or a marker's ``input_path``);
    ``row_filter``: which training rows a retraining leaves out (the champion's flags, confirmed
    anomalies; never from the holdout, so the gate compares on rows neither model chose; see
    tasks.row_filter); ``gate_context`` is recorded with the gate decision (e.g. the retraining
    trigger).
    """
    run = run or new_run_id()
    batch_ids = [b.batch_id for b in batches]
    split = split_training_window_task(
        batch_paths=[b.path if isinstance(b, BatchRef) else b.input_path for b in batches],
        columns=cfg.columns,
        evaluation=cfg.evaluation,
        seed=cfg.training.seed,
        run=run,
        storage=storage,
    )
    filtered = RowsLeftOut(split=split, rows_before=split.train_rows, rows_left_out=0)
    if row_filter is not None:
        filtered = filter_training_rows_task(
            split=split, row_filter=row_filter, columns=cfg.columns, run=run, storage=storage
        )
        split = filtered.split
    trained = fit_model_task(
        split=split,
        training_batches=batch_ids,
        columns=cfg.columns,
        training=cfg.training,
        detector_params=cfg.detector_params(),
        storage=storage,
        threshold=cfg.threshold,
    )
    champion_before = champion_task(storage)
    identical = trained.version if trained.reused and trained.version == champion_before else None
    evaluation = evaluate_task(
        version=trained.version,
        split=split,
        columns=cfg.columns,
        training=cfg.training,
        evaluation=cfg.evaluation,
        run=run,
        storage=storage,
    )
    champion = evaluate_champion_task(
        champion_version=champion_before,
        challenger_version=trained.version,
        split=split,
        scales=evaluation.reconstruction_scales,
        storage=storage,
    )
    discard_training_split_task(split, storage.options)
    gate = gate_task(
        evaluation=evaluation,
        champion=champion,
        settings=cfg.evaluation,
        promote=promote,
        context={"run": run, **(gate_context or {})},
        identical_champion=identical,
        storage=storage,
    )
    report = None
    if cfg.evaluation.report:
        report = report_task(
            run=run, evaluation=evaluation, champion=champion, gate=gate, storage=storage
        )
        record_report_task(version=trained.version, run=run, report=report, storage=storage)
    return TrainingRun(
        dataset=cfg.dataset,
        run=run,
        model=trained,
        evaluation=evaluation,
        gate=gate,
        training_batches=batch_ids,
        models_root=storage.models,
        bundle=storage.model_version(trained.version),
        report=report,
        rows_before_filter=filtered.rows_before,
        rows_left_out=filtered.rows_left_out,
        flagged_left_out=filtered.flagged_left_out,
        confirmed_left_out=filtered.confirmed_left_out,
        false_positives_kept=filtered.false_positives_kept,
    )


def accepted_training_window(
    cfg: PipelineConfig, storage: Storage, until: str | None, batches: list[str] | None
) -> tuple[list[BatchRef], list[Any]]:
    """(the training window's batches that pass validation, the validation outcomes of those that
    do not): the window is ``training.window_days`` up to ``until``, or ``batches``; the left-out
    batches are logged (the train and tune flows use it)."""
    logger = get_run_logger()
    available = list_batches_task(storage)
    window = select_training_batches_task(
        available,
        storage=storage,
        columns=cfg.columns,
        training=cfg.training,
        until=until,
        explicit=batches,
    )
    if not window:
        within = f" dated in the {cfg.training.window_days} days up to {until}" if until else ""
        raise ValueError(
            f"no batches to train on in {storage.incoming}{within}; add Parquet files there "
            "(e.g. `aeflow demo-data` or `aeflow ingest`) or widen training.window_days"
        )
    outcomes = [future.result() for future in validate_batches(cfg, storage, window)]
    accepted = [b for b, o in zip(window, outcomes, strict=True) if o.accepted]
    rejected = [o for o in outcomes if not o.accepted]
    for outcome in rejected:
        logger.warning("left out of training: %s (%s)", outcome.batch_id, outcome.reason)
    return accepted, rejected


@flow(name="aeflow-train", log_prints=True, **API_WATCH_HOOKS)
def train_flow(
    config: str,
    until: str | None = None,
    batches: list[str] | None = None,
    promote: bool = True,
    params: str | None = None,
) -> dict[str, Any]:
    """Train a detector on the batches dated in the last `training.window_days` days up to `until`
    (YYYY-MM-DD; the newest batch's date by default), or on the explicit `batches`, evaluate it on a holdout, and make it the champion when the promotion gate
    lets it (`promote=False` records the gate's decision without applying it).

    Batches failing validation are left out of training (and left in incoming/ for the score flow,
    which quarantines them). `params`: a parameters file (a [model] table, such as the
    best-params.toml of `aeflow tune`) laid over the config's model section.
    """
    logger = get_run_logger()
    cfg = load_config(config)
    if params:
        cfg = with_model_params(cfg, params)
    check_config_columns(cfg, against_model=False)
    storage = storage_of(cfg)
    accepted, rejected = accepted_training_window(cfg, storage, until, batches)
    trained = train_evaluate_gate(cfg, storage, accepted, promote=promote)
    announce_train(trained)
    logger.info(
        "registered model %s; gate: %s (promoted: %s); report: %s",
        trained.model.version,
        trained.gate.decision,
        trained.gate.promoted,
        trained.report["html"] if trained.report else None,
    )
    return {
        **trained.to_dict(),
        "left_out": [{"batch_id": o.batch_id, "reason": o.reason} for o in rejected],
    }
