"""The `train` flow: training window -> validate -> fit -> register -> promote.

Wiring only: every step is a task in tasks/. The flow takes the config file's path (a typed, JSON-able
parameter Prefect can show and schedule) and passes explicit values to the tasks.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, unmapped

from flows.config import load_config
from tasks.io import StorageLayout, list_batches_task
from tasks.training import promote_task, select_training_batches, train_model_task
from tasks.validate import validate_batch_task


@flow(name="aeflow-train", log_prints=True)
def train_flow(
    config: str,
    until: str | None = None,
    batches: list[str] | None = None,
    promote: bool = True,
) -> dict[str, Any]:
    """Train a detector on the last `training.window_days` accepted batches (ids <= `until`, or the
    explicit `batches`), register it, and make it the champion when `promote` is true.

    Batches failing validation are left out of training (and left in incoming/ for the score flow,
    which quarantines them).
    """
    logger = get_run_logger()
    cfg = load_config(config)
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    opts = cfg.storage.options
    cols = cfg.columns
    available = list_batches_task(layout.incoming, opts)
    window = select_training_batches(
        available, cfg.training.window_days, until, batches or cfg.training.batches
    )
    if not window:
        raise ValueError(
            f"no batches to train on in {layout.incoming}; add Parquet files there "
            "(e.g. `aeflow demo-data` or `aeflow ingest`)"
        )
    outcomes = validate_batch_task.map(
        window,
        unmapped(cfg.suite_path),
        unmapped(cols.id),
        unmapped(cols.timestamp),
        unmapped(cols.numeric),
        unmapped(cols.categorical),
        unmapped(cols.missing_values),
        unmapped(cfg.validation.on_warning),
        unmapped(opts),
    ).result()
    accepted = [b for b, o in zip(window, outcomes, strict=True) if o["accepted"]]
    rejected = [o for o in outcomes if not o["accepted"]]
    for outcome in rejected:
        logger.warning("left out of training: %s (%s)", outcome["batch_id"], outcome["reason"])
    trained = train_model_task(
        [b["path"] for b in accepted],
        [b["batch_id"] for b in accepted],
        cols.numeric,
        cols.categorical,
        cols.missing_values,
        cols.label,
        cols.label_positive,
        cols.label_negative,
        cfg.training.exclude_labelled_anomalies,
        cfg.training.max_rows,
        cfg.training.seed,
        cfg.detector_params(),
        layout.models,
        opts,
    )
    promoted = False
    if promote:
        promote_task(
            layout.models, trained["version"], "trained by the train flow with promote=True", opts
        )
        promoted = True
    logger.info("registered model %s (promoted: %s)", trained["version"], promoted)
    return {
        "dataset": cfg.dataset,
        "version": trained["version"],
        "promoted": promoted,
        "metrics": trained["metrics"],
        "training_batches": [b["batch_id"] for b in accepted],
        "left_out": [{"batch_id": o["batch_id"], "reason": o["reason"]} for o in rejected],
        "models_root": layout.models,
    }
