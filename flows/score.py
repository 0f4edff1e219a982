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
from models.registry import RegistryError
from models.storage_errors import StorageError
from tasks.io import StorageLayout, scan_incoming_task, storage_retry_options
from tasks.quarantine import QUARANTINED, quarantine_rejected_task, quarantine_task
from tasks.reporting import RESULT_KEYS, publish_result, score_line, score_summary_task
from tasks.scoring import find_pending_batches_task, score_batch_task
from tasks.validate import validate_batch_task


def with_storage_retries(task: Any, cfg: PipelineConfig) -> Any:
    """``task`` retrying transient storage errors as the config's storage section says."""
    return task.with_options(
        **storage_retry_options(cfg.storage.retries, cfg.storage.retry_delay_s)
    )


def validate_batches(
    cfg: PipelineConfig, layout: StorageLayout, batches: list[dict[str, Any]]
) -> Any:
    """Submit one validation task per batch (mapped over the task runner); returns the futures,
    in the order of ``batches``. Call inside a flow.
    """
    shared = {name: unmapped(value) for name, value in cfg.validation_arguments().items()}
    data_docs_dir = layout.reports("data-docs") if cfg.validation.data_docs else None
    validate = with_storage_retries(validate_batch_task, cfg)
    return validate.map(batches, data_docs_dir=unmapped(data_docs_dir), **shared)


def _failed(result: dict[str, list[Any]], batch_id: str, exc: BaseException) -> None:
    """Record a batch that could not be processed (its message, and the exception in ``errors``)."""
    result["failures"].append(f"{batch_id}: {exc.__class__.__name__}: {exc}")
    result["errors"].append(exc)


def validate_and_score(
    cfg: PipelineConfig,
    layout: StorageLayout,
    batches: list[dict[str, Any]],
    model_version: str,
    force: bool = False,
    rejected: list[dict[str, Any]] | None = None,
) -> dict[str, list[Any]]:
    """Validate each batch (mapped over the task runner), quarantine the rejected ones and score
    each accepted one with ``model_version`` as soon as its own validation passes (as the score
    flow does); quarantine the ``rejected`` batches (refused ids, see tasks.incoming) unvalidated.
    Storage work is retried on transient errors (the config's storage.retries). Call inside a flow.

    Returns ``{"scored": [markers], "skipped": [markers of batches a concurrent run scored, and
    records of batches it quarantined], "quarantined": [...], "warnings": [outcomes],
    "failures": [messages], "errors": [the exceptions]}``, each by batch id.
    """
    opts, cols = cfg.storage.options, cfg.columns
    result: dict[str, list[Any]] = {
        "scored": [], "skipped": [], "quarantined": [], "warnings": [], "failures": [], "errors": []
    }  # fmt: skip
    quarantine_one = with_storage_retries(quarantine_task, cfg)
    quarantining = [
        (r["batch_id"], with_storage_retries(quarantine_rejected_task, cfg).submit(
            r, layout.quarantine(r["batch_id"]), opts
        ))
        for r in rejected or []
    ]  # fmt: skip
    scoring = []
    if batches:
        validations = validate_batches(cfg, layout, batches)
        batch_of = {f.task_run_id: b for f, b in zip(validations, batches, strict=True)}
        score = with_storage_retries(score_batch_task, cfg)
        for validated in as_completed(list(validations)):
            batch = batch_of[validated.task_run_id]
            try:
                outcome = validated.result()
            except Exception as exc:  # storage trouble: reported at the end, nothing judged
                _failed(result, batch["batch_id"], exc)
                continue
            if not outcome["accepted"]:
                quarantining.append(
                    (
                        batch["batch_id"],
                        quarantine_one.submit(
                            batch, layout.quarantine(batch["batch_id"]), outcome, opts
                        ),
                    )
                )
                continue
            if outcome["status"] == "warning":
                result["warnings"].append(outcome)
            scoring.append(
                (
                    batch["batch_id"],
                    score.submit(
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
                    ),
                )
            )
    for batch_id, future in scoring:
        try:
            marker = future.result()
        except Exception as exc:  # reported at the end of the run; the other batches go on
            _failed(result, batch_id, exc)
            continue
        result["scored" if marker["status"] == "scored" else "skipped"].append(marker)
    for batch_id, future in quarantining:
        try:
            moved = future.result()
        except Exception as exc:
            _failed(result, batch_id, exc)
            continue
        result["quarantined" if moved["status"] == QUARANTINED else "skipped"].append(moved)
    for key in ("scored", "skipped", "quarantined", "warnings"):
        result[key].sort(key=itemgetter("batch_id"))
    return result


def raise_failures(outcome: dict[str, list[Any]]) -> None:
    """Fail the run after its summary when a batch could not be processed; nothing that failed was
    quarantined or marked. A storage failure is raised as that :class:`StorageError` (its message
    names the storage URL; exit code 4); errors that explain themselves (a bad suite, an unknown
    model version: ValueError, RegistryError) as the first of them (exit 2); anything else as
    :class:`BatchesFailed` listing every failed batch (exit 1)."""
    failures, errors = outcome["failures"], outcome.get("errors") or []
    if not failures:
        return
    get_run_logger().error("%d batch(es) failed: %s", len(failures), "; ".join(failures))
    more = len(failures) - 1
    suffix = f" ({more} more batch(es) failed too; see the run's log)" if more else ""
    storage = [e for e in errors if isinstance(e, StorageError)]
    if storage:
        raise type(storage[0])(f"{storage[0]}{suffix}", storage[0].url)
    if errors and all(isinstance(e, ValueError | RegistryError) for e in errors):
        raise errors[0]
    raise BatchesFailed(f"{len(failures)} batch(es) failed to score: " + "; ".join(failures))


@flow(name="aeflow-score", log_prints=True, **API_WATCH_HOOKS)
def score_flow(
    config: str, model_version: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Score every batch in incoming/ not yet scored by the model (the champion unless
    `model_version`); `force` re-scores batches already scored. Returns the run summary, which
    also lists every path under incoming/ that is not a batch (`ignored`, with the reason).

    Raises after the summary when a batch failed: StorageError when the storage was unreachable
    or refused access (naming its URL), BatchesFailed otherwise (the other batches are committed).
    """
    cfg = load_config(config)
    check_config_columns(cfg, model_version)
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    opts = cfg.storage.options
    scan = with_storage_retries(scan_incoming_task, cfg)(layout.incoming, opts)
    plan = with_storage_retries(find_pending_batches_task, cfg)(
        scan["batches"], layout.root, cfg.dataset, model_version, force, opts
    )
    pending, version = plan["pending"], plan["model_version"]
    outcome = validate_and_score(cfg, layout, pending, version, force, scan["rejected"])
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
        scan["ignored"],
    )
    failures = outcome["failures"]
    failed = f"; {len(failures)} failed to score" if failures else ""
    publish_result(
        "score",
        cfg.dataset,
        f"{cfg.dataset} scored with {version}: {score_line(summary)}{failed}",
        {key: summary[key] for key in RESULT_KEYS},
    )
    raise_failures(outcome)
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
