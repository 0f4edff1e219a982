"""The `train` flow: training window -> validate -> split -> fit -> evaluate -> gate -> report.

Wiring only: every step is a task in tasks/. The flow takes the config file's path (a typed, JSON-able
parameter Prefect can show and schedule) and passes explicit values to the tasks. Tasks exchange
paths and JSON records: the split files, the holdout scores and the report live under
``<root>/reports/<dataset>/<run>/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger

from flows.config import PipelineConfig, load_config, with_model_params
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from flows.score import validate_batches
from models.registry import ModelRegistry
from tasks.evaluate import evaluate_champion_task, evaluate_task, headline, new_run_id
from tasks.gate import gate_task
from tasks.io import StorageLayout, join, list_batches_task
from tasks.report import report_task
from tasks.reporting import publish_result
from tasks.training import (
    discard_training_split_task,
    fit_model_task,
    select_training_batches_task,
    split_training_window_task,
)
from tasks.window import without_flagged_rows_task

FILTERED_TRAIN_FILE = "train-without-flagged.parquet"


def train_evaluate_gate(
    cfg: PipelineConfig,
    batch_paths: Sequence[str],
    batch_ids: Sequence[str],
    promote: bool = True,
    run: str | None = None,
    flagged_window: Sequence[dict[str, Any]] | None = None,
    gate_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Split, fit, evaluate, gate and report on already accepted batches (call it inside a flow;
    the retrain flow reuses it). Returns the train flow's result without ``left_out``.

    ``flagged_window``: scored batches whose flagged rows are left out of the training part (never
    the holdout, so the gate compares on rows neither model chose); ``gate_context`` is recorded
    with the gate decision (e.g. the retraining trigger).
    """
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    opts, cols, evaluation_cfg = cfg.storage.options, cfg.columns, cfg.evaluation
    seed = cfg.training.seed
    run = run or new_run_id()
    run_dir = layout.reports(run)
    split = split_training_window_task(
        list(batch_paths),
        cols.id,
        cols.timestamp,
        cols.numeric,
        cols.categorical,
        cols.missing_values,
        cols.label,
        cols.label_positive,
        cols.label_negative,
        evaluation_cfg.holdout_fraction,
        evaluation_cfg.holdout_max_rows,
        seed,
        run_dir,
        opts,
    )
    rows_before_filter, rows_left_out = split["train_rows"], 0
    if flagged_window is not None:
        filtered = without_flagged_rows_task(
            split["train_path"],
            list(flagged_window),
            cols.id,
            join(run_dir, FILTERED_TRAIN_FILE),
            opts,
        )
        discard_training_split_task(split, opts)
        rows_left_out = filtered["rows_left_out"]
        split = {**split, "train_path": filtered["path"], "train_rows": filtered["rows_kept"]}
    trained = fit_model_task(
        split["train_path"],
        list(batch_ids),
        cols.numeric,
        cols.categorical,
        split["label_column"],  # None when a batch of the window has no label
        cfg.training.exclude_labelled_anomalies,
        cfg.training.max_rows,
        seed,
        cfg.detector_params(),
        layout.models,
        opts,
    )
    version = trained["version"]
    champion_before = ModelRegistry(layout.models, opts).champion()
    identical_champion = version if trained["reused"] and version == champion_before else None
    evaluation = evaluate_task(
        layout.models,
        version,
        split,
        cols.numeric,
        cols.categorical,
        cols.passthrough,
        cfg.training.exclude_labelled_anomalies,
        evaluation_cfg.baselines,
        evaluation_cfg.baseline_max_rows,
        evaluation_cfg.leakage_auroc,
        seed,
        run_dir,
        opts,
    )
    champion = evaluate_champion_task(
        layout.models, version, split, evaluation["reconstruction"]["scales"], opts
    )
    discard_training_split_task(split, opts)
    gate = gate_task(
        layout.models,
        version,
        evaluation,
        champion,
        evaluation_cfg.reconstruction_margin,
        evaluation_cfg.auroc_margin,
        promote,
        {**headline(evaluation), "run": run, **(gate_context or {})},
        opts,
        identical_champion,
    )
    report = None
    if evaluation_cfg.report:
        report = report_task(
            cfg.dataset, run, evaluation, champion, gate, run_dir, layout.models, opts
        )
    return {
        "dataset": cfg.dataset,
        "version": version,
        "reused": trained["reused"],
        "promoted": gate["promoted"],
        "metrics": trained["metrics"],
        "training_batches": list(batch_ids),
        "models_root": layout.models,
        "run": run,
        "report": report["html"] if report else None,
        "gate": gate,
        "evaluation": headline(evaluation),
        "warnings": list(evaluation["data_quality"]["warnings"]),
        "rows_before_filter": rows_before_filter,
        "rows_left_out": rows_left_out,
    }


def accepted_training_window(
    cfg: PipelineConfig, layout: StorageLayout, until: str | None, batches: list[str] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the training window's batches that pass validation, the validation outcomes of those that
    do not): the window is ``training.window_days`` up to ``until``, or ``batches``; the left-out
    batches are logged (the train and tune flows use it)."""
    logger = get_run_logger()
    opts = cfg.storage.options
    available = list_batches_task(layout.incoming, opts)
    window = select_training_batches_task(
        available,
        layout.root,
        cfg.dataset,
        cfg.training.window_days,
        until,
        batches or cfg.training.batches,
        cfg.columns.batch_date,
        cfg.columns.timestamp,
        opts,
    )
    if not window:
        within = f" dated in the {cfg.training.window_days} days up to {until}" if until else ""
        raise ValueError(
            f"no batches to train on in {layout.incoming}{within}; add Parquet files there "
            "(e.g. `aeflow demo-data` or `aeflow ingest`) or widen training.window_days"
        )
    outcomes = [future.result() for future in validate_batches(cfg, layout, window)]
    accepted = [b for b, o in zip(window, outcomes, strict=True) if o["accepted"]]
    rejected = [o for o in outcomes if not o["accepted"]]
    for outcome in rejected:
        logger.warning("left out of training: %s (%s)", outcome["batch_id"], outcome["reason"])
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
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    accepted, rejected = accepted_training_window(cfg, layout, until, batches)
    result = train_evaluate_gate(
        cfg, [b["path"] for b in accepted], [b["batch_id"] for b in accepted], promote
    )
    status = "champion" if result["promoted"] else "registered, not promoted"
    if result["reused"]:
        status = "identical to this registered version, reused"
    publish_result(
        "train",
        cfg.dataset,
        f"{cfg.dataset} trained {result['version']} ({status}): {'; '.join(result['gate']['reasons'])}",
        {"version": result["version"], "promoted": result["promoted"], "reused": result["reused"]},
    )
    logger.info(
        "registered model %s; gate: %s (promoted: %s); report: %s",
        result["version"],
        result["gate"]["decision"],
        result["promoted"],
        result["report"],
    )
    return {
        **result,
        "left_out": [{"batch_id": o["batch_id"], "reason": o["reason"]} for o in rejected],
    }
