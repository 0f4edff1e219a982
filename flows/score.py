"""The `score` flow: find unscored batches -> validate each -> quarantine or score -> summary.

Wiring only. Batches are mapped over the flow's task runner (threads by default; a Dask cluster with
`--dask`), so validation and scoring of different batches overlap.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from flows.config import load_config
from tasks.io import StorageLayout, list_batches_task
from tasks.reporting import score_summary_task
from tasks.scoring import find_pending_batches_task, score_batch_task
from tasks.validate import quarantine_task, validate_batch_task


@flow(name="aeflow-score", log_prints=True)
def score_flow(
    config: str, model_version: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Score every batch in incoming/ not yet scored by the model (the champion unless
    `model_version`); `force` re-scores batches already scored. Returns the run summary.
    """
    cfg = load_config(config)
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    opts = cfg.storage.options
    cols = cfg.columns
    available = list_batches_task(layout.incoming, opts)
    plan = find_pending_batches_task(
        available, layout.root, cfg.dataset, model_version, force, opts
    )
    pending, version = plan["pending"], plan["model_version"]
    outcomes = validate_batch_task.map(
        pending,
        unmapped(cfg.suite_path),
        unmapped(cols.id),
        unmapped(cols.timestamp),
        unmapped(cols.numeric),
        unmapped(cols.categorical),
        unmapped(cols.missing_values),
        unmapped(cfg.validation.on_warning),
        unmapped(opts),
    ).result()
    scoring, quarantining, warnings = [], [], []
    for batch, outcome in zip(pending, outcomes, strict=True):
        if outcome["accepted"]:
            if outcome["status"] == "warning":
                warnings.append(outcome)
            scoring.append(
                score_batch_task.submit(
                    batch,
                    layout.root,
                    cfg.dataset,
                    cols.passthrough,
                    cols.timestamp,
                    cols.numeric,
                    cols.categorical,
                    cols.missing_values,
                    version,
                    cfg.scoring.chunk_rows,
                    cfg.scoring.top_k,
                    force,
                    opts,
                )
            )
        else:
            quarantining.append(
                quarantine_task.submit(batch, layout.quarantine(batch["batch_id"]), outcome, opts)
            )
    return score_summary_task(
        cfg.dataset,
        version,
        [f.result() for f in scoring],
        plan["skipped"],
        [f.result() for f in quarantining],
        warnings,
    )


def run_score(
    config: str,
    model_version: str | None = None,
    force: bool = False,
    workers: int | None = None,
    task_runner: Any = None,
) -> dict[str, Any]:
    """Run the score flow with `workers` threads (the config's `scoring.workers` by default), or on
    the given Prefect task runner (e.g. a DaskTaskRunner).
    """
    from prefect.task_runners import ThreadPoolTaskRunner

    if task_runner is None:
        threads = workers or load_config(config).scoring.workers
        task_runner = ThreadPoolTaskRunner(max_workers=threads)
    return score_flow.with_options(task_runner=task_runner)(
        config=config, model_version=model_version, force=force
    )
