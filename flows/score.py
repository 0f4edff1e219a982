"""The `score` flow: find unscored batches -> validate each -> quarantine or score -> summary.

Wiring only. One batch goes (each arrow a task, each name a typed record)::

    incoming/<dataset>/<batch_id>.parquet
      -> BatchRef (tasks.incoming; scan_incoming_task: IncomingScan.batches)
      -> not scored yet by this model from these bytes (find_pending_batches_task: PendingBatches)
      -> ValidationOutcome (tasks.validation: validate_batch_task)
      -> accepted: ScoreMarker (tasks.records; tasks.scoring: score_batch_task), its output
         scored/<dataset>/date=YYYY-MM-DD/<batch_id>.parquet and its marker
         scored/<dataset>/_success/<batch_id>.json
      -> rejected: QuarantineRecord (tasks.records; tasks.validation: quarantine_task), the batch
         moved to quarantine/<dataset>/<batch_id>/ with its report.json and report.md
    every batch's record -> BatchResults -> the run summary (tasks.report.run_summary: JSON, a
    Prefect artifact, the run's result)

Batches are mapped over the flow's task runner: threads by default, or a Dask cluster
(`aeflow score --dask ADDRESS|local`, through prefect-dask). A batch is scored as soon as its own
validation passes, so validating one batch overlaps with scoring another. The run's `Storage` (root,
dataset, fsspec options, retries, layout) is built once from the config and passed to every task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import flow, unmapped
from prefect.futures import as_completed

from flows.config import PipelineConfig, load_config, storage_of
from flows.errors import raise_failures
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from tasks.events import batch_quarantined, batch_scored, emit
from tasks.incoming import BatchRef, IgnoredInput, RejectedBatch
from tasks.io import Storage, scan_incoming_task
from tasks.records import SCORED, QuarantineRecord, ScoreMarker
from tasks.report.run_summary import RunBatches, score_summary_task, summarize_score_run
from tasks.run_reports import announce_score
from tasks.scoring import find_pending_batches_task, score_batch_task
from tasks.validation import (
    QUARANTINED,
    ValidationOutcome,
    quarantine_rejected_task,
    quarantine_task,
    validate_batch_task,
)


def validate_batches(cfg: PipelineConfig, storage: Storage, batches: list[BatchRef]) -> Any:
    """Submit one validation task per batch (mapped over the task runner); returns the futures,
    in the order of ``batches``. Call inside a flow.
    """
    validate = validate_batch_task.with_options(**storage.retry_options())
    return validate.map(
        batches,
        columns=unmapped(cfg.columns),
        validation=unmapped(cfg.validation),
        options=unmapped(storage.options),
        data_docs=unmapped(storage if cfg.validation.data_docs else None),
    )


@dataclass
class BatchResults:
    """What became of each batch of a run, by batch id: scored (markers), skipped (markers of
    batches a concurrent run scored, records of batches it quarantined), quarantined (records),
    scored with warnings (validation outcomes), and the batches that failed (a message each, and
    the exceptions)."""

    scored: list[ScoreMarker] = field(default_factory=list)
    skipped: list[ScoreMarker | QuarantineRecord] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    warnings: list[ValidationOutcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    @property
    def committed(self) -> int:
        """Batches this run scored or quarantined (their outputs are committed)."""
        return len(self.scored) + len(self.quarantined)

    def settle(self) -> BatchResults:
        """Once every batch is done: the warnings kept only for batches this run scored (a batch
        a concurrent run scored first is skipped here, one that failed is a failure: neither was
        "scored with warnings" by this run), every list in batch id order. Returns self."""
        scored = {marker.batch_id for marker in self.scored}
        self.warnings = [outcome for outcome in self.warnings if outcome.batch_id in scored]
        for found in (self.scored, self.skipped, self.quarantined, self.warnings):
            found.sort(key=batch_id_of)
        return self

    def failed(self, batch_id: str, exc: BaseException) -> None:
        """Record a batch that could not be processed (its message, and the exception)."""
        self.failures.append(f"{batch_id}: {exc.__class__.__name__}: {exc}")
        self.errors.append(exc)


def batch_id_of(item: ScoreMarker | QuarantineRecord | ValidationOutcome) -> str:
    """The batch id of a record (a score marker, a quarantine record, a validation outcome)."""
    return item.batch_id


def validate_and_score(
    cfg: PipelineConfig,
    storage: Storage,
    batches: list[BatchRef],
    *,
    model_version: str,
    force: bool = False,
    rejected: list[RejectedBatch] | None = None,
) -> BatchResults:
    """Validate each batch (mapped over the task runner), quarantine the rejected ones and score
    each accepted one with ``model_version`` as soon as its own validation passes (as the score
    flow does); quarantine the ``rejected`` batches (refused ids, see tasks.incoming) unvalidated.
    Storage work is retried on transient errors (the config's storage.retries). Each batch scored
    or quarantined here (not skipped) is announced as a Prefect event once its output is
    committed (tasks.events; from the flow's process, whatever runs the tasks). Call inside a flow.
    """
    result = BatchResults()
    retrying = storage.retry_options()
    quarantine_one = quarantine_task.with_options(**retrying)
    quarantine_refused = quarantine_rejected_task.with_options(**retrying)
    quarantining = [
        (r.batch_id, quarantine_refused.submit(r, storage=storage)) for r in rejected or []
    ]
    scoring = []
    if batches:
        validations = validate_batches(cfg, storage, batches)
        batch_of = {f.task_run_id: b for f, b in zip(validations, batches, strict=True)}
        score = score_batch_task.with_options(**retrying)
        for validated in as_completed(list(validations)):
            batch = batch_of[validated.task_run_id]
            try:
                outcome = validated.result()
            except Exception as exc:  # storage trouble: reported at the end, nothing judged
                result.failed(batch.batch_id, exc)
                continue
            if not outcome.accepted:
                moved = quarantine_one.submit(batch, outcome, storage=storage)
                quarantining.append((batch.batch_id, moved))
                continue
            if outcome.status == "warning":
                result.warnings.append(outcome)
            scored = score.submit(
                batch=batch,
                storage=storage,
                columns=cfg.columns,
                scoring=cfg.scoring,
                model_version=model_version,
                force=force,
            )
            scoring.append((batch.batch_id, scored))
    for batch_id, future in scoring:
        try:
            marker = future.result()
        except Exception as exc:  # reported at the end of the run; the other batches go on
            result.failed(batch_id, exc)
            continue
        if marker.status == SCORED:
            result.scored.append(marker)
            emit(batch_scored(cfg.dataset, marker))
        else:
            result.skipped.append(marker)
    for batch_id, future in quarantining:
        try:
            moved = future.result()
        except Exception as exc:
            result.failed(batch_id, exc)
            continue
        if moved.status == QUARANTINED:
            result.quarantined.append(moved)
            emit(batch_quarantined(cfg.dataset, moved))
        else:
            result.skipped.append(moved)
    return result.settle()


def summarize_run(
    cfg: PipelineConfig,
    *,
    model_version: str,
    results: BatchResults,
    skipped_before: list[ScoreMarker],
    ignored: list[IgnoredInput] | None = None,
) -> dict[str, Any]:
    """The run summary of a score, nightly or backfill run (a Prefect artifact too): what was
    scored, skipped (also before the run), quarantined and ignored."""
    batches = RunBatches(
        scored=results.scored,
        skipped=sorted([*skipped_before, *results.skipped], key=batch_id_of),
        quarantined=results.quarantined,
        warnings=results.warnings,
    )
    summary = summarize_score_run(
        cfg.dataset,
        model_version,
        batches,
        threshold=cfg.threshold,
        ignored=ignored or [],
    )
    return score_summary_task(summary)


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
    storage = storage_of(cfg)
    retrying = storage.retry_options()
    scan = scan_incoming_task.with_options(**retrying)(storage)
    plan = find_pending_batches_task.with_options(**retrying)(
        batches=scan.batches, storage=storage, model_version=model_version, force=force
    )
    results = validate_and_score(
        cfg,
        storage,
        plan.pending,
        model_version=plan.model_version,
        force=force,
        rejected=scan.rejected,
    )
    # A concurrent run may have scored a batch between planning and scoring: it is skipped then.
    summary = summarize_run(
        cfg,
        model_version=plan.model_version,
        results=results,
        skipped_before=plan.skipped,
        ignored=scan.ignored,
    )
    announce_score("score", summary, action="scored", failed=len(results.failures))
    raise_failures(results.failures, results.errors, results.committed)
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
        if workers is None:
            workers = load_config(config).scoring.workers
        task_runner = task_runner_for(workers, dask)
    return score_flow.with_options(task_runner=task_runner)(
        config=config, model_version=model_version, force=force
    )
