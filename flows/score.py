"""The `score` flow: find unscored batches -> validate each -> quarantine or score -> summary.

Wiring only. Batches are mapped over the flow's task runner: threads by default, or a Dask cluster
(`aeflow score --dask ADDRESS|local`, through prefect-dask). A batch is scored as soon as its own
validation passes, so validating one batch overlaps with scoring another.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.futures import as_completed

from flows.config import PipelineConfig, load_config
from flows.errors import BatchesFailed
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from tasks.io import StorageLayout, list_batches_task
from tasks.reporting import RESULT_KEYS, publish_result, score_line, score_summary_task
from tasks.scoring import find_pending_batches_task, score_batch_task
from tasks.validate import quarantine_task, validate_batch_task


def validate_batches(
    cfg: PipelineConfig, layout: StorageLayout, batches: list[dict[str, Any]]
) -> Any:
    """Submit one validation task per batch (mapped over the task runner); returns the futures,
    in the order of ``batches``. Call inside a flow.
    """
    shared = {name: unmapped(value) for name, value in cfg.validation_arguments().items()}
    data_docs_dir = layout.reports("data-docs") if cfg.validation.data_docs else None
    return validate_batch_task.map(batches, data_docs_dir=unmapped(data_docs_dir), **shared)


def validate_and_score(
    cfg: PipelineConfig,
    layout: StorageLayout,
    batches: list[dict[str, Any]],
    model_version: str,
    force: bool = False,
) -> dict[str, list[Any]]:
    """Validate each batch (mapped over the task runner), quarantine the rejected ones and score
    each accepted one with ``model_version`` as soon as its own validation passes (as the score
    flow does). Call inside a flow.

    Returns ``{"scored": [markers], "skipped": [markers of batches a concurrent run scored],
    "quarantined": [...], "warnings": [outcomes], "failures": [messages]}``, each by batch id.
    """
    opts, cols = cfg.storage.options, cfg.columns
    result: dict[str, list[Any]] = {
        "scored": [], "skipped": [], "quarantined": [], "warnings": [], "failures": []
    }  # fmt: skip
    if not batches:
        return result
    validations = validate_batches(cfg, layout, batches)
    batch_of = {f.task_run_id: b for f, b in zip(validations, batches, strict=True)}
    scoring, quarantining = [], []
    for validated in as_completed(list(validations)):
        batch, outcome = batch_of[validated.task_run_id], validated.result()
        if not outcome["accepted"]:
            quarantining.append(
                quarantine_task.submit(batch, layout.quarantine(batch["batch_id"]), outcome, opts)
            )
            continue
        if outcome["status"] == "warning":
            result["warnings"].append(outcome)
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
                model_version,
                cfg.scoring.chunk_rows,
                cfg.scoring.top_k,
                force,
                opts,
                batch_date_source=cols.batch_date,
            )
        )
    for future in scoring:
        try:
            marker = future.result()
        except Exception as exc:  # reported at the end of the run; the other batches go on
            result["failures"].append(f"{exc.__class__.__name__}: {exc}")
            continue
        result["scored" if marker["status"] == "scored" else "skipped"].append(marker)
    result["quarantined"] = [f.result() for f in quarantining]
    for key in ("scored", "skipped", "quarantined", "warnings"):
        result[key].sort(key=itemgetter("batch_id"))
    return result


@flow(name="aeflow-score", log_prints=True, **API_WATCH_HOOKS)
def score_flow(
    config: str, model_version: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Score every batch in incoming/ not yet scored by the model (the champion unless
    `model_version`); `force` re-scores batches already scored. Returns the run summary.

    Raises RuntimeError after the summary when a batch failed to score (the others are committed).
    """
    cfg = load_config(config)
    check_config_columns(cfg, model_version)
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    opts = cfg.storage.options
    available = list_batches_task(layout.incoming, opts)
    plan = find_pending_batches_task(
        available, layout.root, cfg.dataset, model_version, force, opts
    )
    pending, version = plan["pending"], plan["model_version"]
    outcome = validate_and_score(cfg, layout, pending, version, force)
    # A concurrent run may have scored a batch between planning and scoring: it is skipped then.
    skipped = sorted([*plan["skipped"], *outcome["skipped"]], key=itemgetter("batch_id"))
    summary = score_summary_task(
        cfg.dataset,
        version,
        outcome["scored"],
        skipped,
        outcome["quarantined"],
        outcome["warnings"],
        cfg.threshold.method,
        cfg.threshold.value,
    )
    failures = outcome["failures"]
    failed = f"; {len(failures)} failed to score" if failures else ""
    publish_result(
        "score",
        cfg.dataset,
        f"{cfg.dataset} scored with {version}: {score_line(summary)}{failed}",
        {key: summary[key] for key in RESULT_KEYS},
    )
    if failures:
        get_run_logger().error("%d batch(es) failed to score", len(failures))
        raise BatchesFailed(f"{len(failures)} batch(es) failed to score: " + "; ".join(failures))
    return summary


def task_runner_for(workers: int, dask: str | None = None) -> Any:
    """The Prefect task runner for a score run.

    Args:
        workers: batches validated and scored at once (threads, or Dask workers for "local").
        dask: None for threads in this process; "local" for a temporary Dask LocalCluster of
            ``workers`` single-threaded worker processes; otherwise the address of a running Dask
            scheduler ("tcp://host:8786"), whose workers need aeflow installed.
    """
    if workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers}")
    if dask is None:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ValueError(
            "--dask needs prefect-dask and distributed; install them with `pip install aeflow[dask]`"
        ) from None
    if dask == "local":
        # One thread per worker process: scoring holds the GIL in pandas and scikit-learn, so
        # processes, not threads, spread it over the cores.
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True},
        )
    if "://" not in dask and ":" not in dask:
        raise ValueError(
            f"--dask takes 'local' or a scheduler address such as tcp://host:8786, got {dask!r}"
        )
    return DaskTaskRunner(address=dask)


def run_score(
    config: str,
    model_version: str | None = None,
    force: bool = False,
    workers: int | None = None,
    task_runner: Any = None,
    dask: str | None = None,
) -> dict[str, Any]:
    """Run the score flow with `workers` threads (the config's `scoring.workers` by default), on a
    Dask cluster (`dask`: "local" or a scheduler address), or on the given Prefect task runner.
    """
    if task_runner is None:
        task_runner = task_runner_for(workers or load_config(config).scoring.workers, dask)
    return score_flow.with_options(task_runner=task_runner)(
        config=config, model_version=model_version, force=force
    )
