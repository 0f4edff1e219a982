"""Scoring: stream a batch through the model and commit its output exactly once.

One batch, :func:`score_batch`:

1. Take the batch's lock (:class:`BatchLock`), so concurrent runs never score a batch twice at once.
2. Skip it when its success marker names the same model version and the same input (the cheap
   :func:`tasks.io.fingerprint` first, the sha256 :func:`tasks.io.checksum` when they differ),
   unless forced.
3. Stream it: Parquet record batches -> feature frame -> ``detector.score`` (one torch forward
   pass in ``inference_mode`` per chunk, on the GPU when present) -> output record batch -> an
   incremental ParquetWriter. Reading, scoring and writing run in three threads joined by bounded
   queues, so memory holds a few chunks whatever the file size.
4. Commit the output under its deterministic name,
   ``scored/<dataset>/date=YYYY-MM-DD/<batch_id>.parquet``, by rename (local) or one PUT (object
   stores); a re-run replaces it, nothing is ever appended.
5. Only then write the success marker ``scored/<dataset>/_success/<batch_id>.json``: rows in and
   out, flagged rows, input sha256 and fingerprint, model version, output path.

A crash anywhere before step 5 leaves no marker, so the next run scores the batch again; the output
schema is documented in docs/outputs.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.cpu import choose_torch_threads
from models.registry import ModelRegistry
from models.storage_errors import storage_errors
from tasks.batch_dates import resolve_batch_date, undated_error
from tasks.io import (
    BatchRef,
    RetryableError,
    StorageLayout,
    StorageOptions,
    batch_files,
    checksum,
    exists,
    fingerprint,
    iter_record_batches,
    open_parquet,
    remove,
    remove_batch_temporaries,
    storage_retry_options,
    write_parquet_atomic,
)
from tasks.locks import BatchLock, BatchLockTimeout  # noqa: F401  (re-exported)
from tasks.markers import owned_output, read_marker, relative_path, same_file, write_marker
from tasks.row_scoring import score_rows

T = TypeVar("T")

# The output columns around the latent features z_0..z_{k-1} (docs/outputs.md).
SCORE_FIELDS = (
    pa.field("anomaly_score", pa.float64()),
    pa.field("anomaly_percentile", pa.float64()),
    pa.field("is_anomaly", pa.bool_()),
    pa.field("threshold", pa.float64()),
    pa.field("top_features", pa.string()),
)
TRAILING_FIELDS = (
    pa.field("model_version", pa.string()),
    pa.field("batch_id", pa.string()),
    pa.field("scored_at", pa.timestamp("us", tz="UTC")),
)
SCORE_COLUMNS = tuple(field.name for field in SCORE_FIELDS)
TRAILING_COLUMNS = tuple(field.name for field in TRAILING_FIELDS)
# Record batches buffered between the reading and the scoring threads.
PIPELINE_DEPTH = 2
# Output columns with few distinct values per file. Dictionary-encoding only these (not the float
# scores and latent features, which are all distinct) makes the write 3x cheaper and the file
# smaller (docs/benchmarks/score_speed.md).
DICTIONARY_COLUMNS = ("is_anomaly", "threshold", "top_features", *TRAILING_COLUMNS)
# Test hook: seconds to sleep after writing each scored chunk, so a test can kill a run part-way
# through a small batch. Unset (the default) costs nothing.
SLOW_WRITE_ENV = "AEFLOW_TEST_SLOW_SCORING_S"


# ---------------------------------------------------------------------------------- output schema
def output_schema(
    input_schema: pa.Schema, passthrough: Sequence[str], latent_dim: int
) -> pa.Schema:
    """The scored file's schema: passthrough columns as in the input, then the model outputs.

    See docs/outputs.md for the meaning and units of each column.
    """
    missing = [name for name in passthrough if input_schema.get_field_index(name) < 0]
    if missing:
        raise ValueError(
            f"passthrough column(s) {missing} are not in the batch (columns: {input_schema.names}); "
            "fix the config's columns.id / columns.timestamp or the batch"
        )
    fields = [input_schema.field(name) for name in passthrough]
    fields += SCORE_FIELDS
    fields += [pa.field(f"z_{i}", pa.float32()) for i in range(latent_dim)]
    fields += TRAILING_FIELDS
    return pa.schema(fields)


# ------------------------------------------------------------------------------------------ model
_model_cache: dict[tuple[str, str], Any] = {}
_model_cache_lock = threading.Lock()


def load_model(
    models_root: str, version: str | None, options: StorageOptions = None
) -> tuple[Any, str]:
    """(detector, version) for ``version`` or the champion, loaded once per process and version."""
    registry = ModelRegistry(models_root, options)
    resolved = registry.resolve(version)
    key = (models_root, resolved)
    with _model_cache_lock:
        if key not in _model_cache:
            _model_cache[key] = registry.load(resolved)[0]
        return _model_cache[key], resolved


# Scoring calls running in this process right now; each sizes its torch thread pool from it.
_active_scorers = 0
_active_scorers_lock = threading.Lock()


@contextlib.contextmanager
def _count_active_scorer() -> Iterator[int]:
    global _active_scorers
    with _active_scorers_lock:
        _active_scorers += 1
        active = _active_scorers
    try:
        yield active
    finally:
        with _active_scorers_lock:
            _active_scorers -= 1


def default_torch_threads(concurrent_batches: int, scoring_threads: int = 1) -> int:
    """Torch intra-op threads for one scoring thread: ``AEFLOW_TORCH_THREADS`` when set, else the
    CPUs this process may use that busy neighbours leave idle (affinity, cgroup quota and load:
    :func:`models.cpu.usable_cpus`) less one for the reading and writing threads, shared by all
    scoring threads of the batches scored at once, at least 1.

    Why not torch's default (all CPUs): more threads than idle CPUs only wait for one another, and
    make the forward pass several times slower beside busy neighbours (4.5x on the 2-core machine
    of docs/benchmarks/score_speed.md; docs/benchmarks/contention.md).
    """
    return choose_torch_threads(reserve=1, share=concurrent_batches * scoring_threads)


# -------------------------------------------------------------------------------------- streaming
def prefetch(
    items: Iterable[T], depth: int = PIPELINE_DEPTH, name: str = "prefetch"
) -> Iterator[T]:
    """Iterate ``items`` in a background thread, keeping at most ``depth`` items ready.

    A stage of a pipeline: the producer's work (Parquet decoding) overlaps with the consumer's,
    while the bounded queue keeps memory flat. An exception in the producer is raised
    in the consumer; closing the consumer stops the producer.
    """
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(("error", exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name=f"aeflow-{name}", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        producer.join()


def ordered_map(
    function: Callable[[T], Any],
    items: Iterable[T],
    workers: int,
    initializer: Callable[[], None] | None = None,
    name: str = "map",
) -> Iterator[Any]:
    """``function`` over ``items`` in ``workers`` threads; results in input order, with at most
    ``workers + 1`` items in flight (memory stays bounded). An exception is raised in order, and
    closing the iterator cancels the work not yet started.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix=f"aeflow-{name}", initializer=initializer)
    in_flight: deque[Future[Any]] = deque()
    try:
        for item in items:
            in_flight.append(pool.submit(function, item))
            if len(in_flight) > workers:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def score_chunk(
    record_batch: pa.RecordBatch,
    detector: Any,
    schema: pa.Schema,
    *,
    model_version: str,
    batch_id: str,
    passthrough: Sequence[str],
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str] = (),
    top_k: int = 3,
    scored_at: dt.datetime,
) -> pa.RecordBatch:
    """One input record batch (n rows) -> one output record batch of ``schema`` (n rows, same
    order): the passthrough columns, then ``detector.score``'s outputs, then the constants."""
    n = record_batch.num_rows
    latent_dim = sum(1 for name in schema.names[len(passthrough) :] if name.startswith("z_"))
    result = score_rows(record_batch, detector, numeric, categorical, missing_tokens, top_k)
    latent = np.asarray(result.latent, dtype=np.float32)
    if latent.shape != (n, latent_dim):
        raise ValueError(
            f"the model returned latent features of shape {latent.shape}, the output schema "
            f"expects ({n}, {latent_dim}); the model and the schema are out of step"
        )
    arrays = [record_batch.column(name) for name in passthrough]
    arrays += [
        pa.array(np.asarray(result.scores, dtype=np.float64)),
        pa.array(np.asarray(result.percentiles, dtype=np.float64)),
        pa.array(np.asarray(result.is_anomaly, dtype=bool)),
        pa.repeat(pa.scalar(float(detector.threshold_), pa.float64()), n),
        pa.array(result.top_features, type=pa.string()),
    ]
    arrays += [pa.array(latent[:, i]) for i in range(latent_dim)]
    arrays += [
        pa.repeat(pa.scalar(model_version, pa.string()), n),
        pa.repeat(pa.scalar(batch_id, pa.string()), n),
        pa.repeat(pa.scalar(scored_at, pa.timestamp("us", tz="UTC")), n),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def score_record_batches(
    record_batches: Iterable[pa.RecordBatch],
    detector: Any,
    schema: pa.Schema,
    *,
    model_version: str,
    batch_id: str,
    passthrough: Sequence[str],
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str] = (),
    top_k: int = 3,
    scored_at: dt.datetime,
    counters: dict[str, int] | None = None,
    scoring_threads: int = 1,
    torch_threads: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Score input record batches into output record batches of ``schema`` (one per non-empty
    input, rows in the same order), with ``scoring_threads`` chunks scored at once.

    ``counters`` (when given) accumulates ``rows_in``, ``rows_out`` and ``flagged``.
    ``torch_threads`` sets the intra-op threads of each scoring thread.
    """
    counters = counters if counters is not None else {}
    for key in ("rows_in", "rows_out", "flagged"):
        counters.setdefault(key, 0)

    def non_empty() -> Iterator[pa.RecordBatch]:
        for record_batch in record_batches:
            counters["rows_in"] += record_batch.num_rows
            if record_batch.num_rows:
                yield record_batch

    def set_torch_threads() -> None:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)  # this thread's OpenMP pool only

    def score_one(record_batch: pa.RecordBatch) -> pa.RecordBatch:
        return score_chunk(
            record_batch,
            detector,
            schema,
            model_version=model_version,
            batch_id=batch_id,
            passthrough=passthrough,
            numeric=numeric,
            categorical=categorical,
            missing_tokens=missing_tokens,
            top_k=top_k,
            scored_at=scored_at,
        )

    for scored in ordered_map(score_one, non_empty(), scoring_threads, set_torch_threads, "score"):
        counters["rows_out"] += scored.num_rows
        counters["flagged"] += int(pc.sum(scored.column("is_anomaly")).as_py() or 0)
        yield scored


def _slowed_for_tests(record_batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    delay = float(os.environ.get(SLOW_WRITE_ENV, "0") or 0)
    for record_batch in record_batches:
        yield record_batch
        if delay > 0:
            time.sleep(delay)


# ----------------------------------------------------------------------------------- exactly once
def is_scored_by(
    marker: dict[str, Any] | None,
    model_version: str,
    path: str,
    options: StorageOptions = None,
    input_fingerprint: str | None = None,
) -> bool:
    """Whether a success marker records ``path``'s current bytes scored by ``model_version``, and
    its scored file is still there (one deleted by hand is scored again).

    The fingerprint (file metadata) decides when it matches; otherwise the sha256 of the bytes does,
    so only batches that look changed are read in full.
    """
    if marker is None or marker.get("model_version") != model_version:
        return False
    if not marker.get("output") or not exists(marker["output"], options):
        return False
    current = input_fingerprint or fingerprint(path, options)
    if marker.get("input_fingerprint") == current:
        return True
    return marker.get("input_sha256") == checksum(path, options)


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def score_batch(
    batch: BatchRef | dict[str, Any],
    layout: StorageLayout,
    passthrough: Sequence[str],
    timestamp_column: str | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str] = (),
    model_version: str | None = None,
    chunk_rows: int = 65_536,
    top_k: int = 3,
    force: bool = False,
    options: StorageOptions = None,
    *,
    scoring_threads: int = 1,
    torch_threads: int | None = None,
    lock_timeout_s: float = 3600.0,
    batch_date_source: str = "auto",
) -> dict[str, Any]:
    """Score one batch with the champion (or ``model_version``) and commit it exactly once.

    Args:
        batch: the batch (a :class:`BatchRef` or its dict).
        layout: the dataset's storage layout.
        passthrough: input columns copied to the output (id, timestamp).
        timestamp_column: the event-time column, one source of the batch's date.
        numeric, categorical, missing_tokens: the model's input columns and missing-value tokens.
        model_version: a registered version; None scores with the champion.
        chunk_rows: rows per record batch streamed through the model (memory scales with it).
        top_k: columns named in ``top_features``.
        force: score even when the marker says this model already scored these bytes.
        options: fsspec storage options.
        scoring_threads: chunks of this batch scored at once. More than one overlaps a chunk's
            GIL-bound preprocessing (pandas, scikit-learn) with another's forward pass, which can
            help on idle machines with spare cores, at the cost of one more chunk in memory; on a
            busy 2-core machine it was slower and used 25% more memory
            (docs/benchmarks/score_speed.md), so more cores are better used by scoring several
            batches at once (flow workers, Dask workers).
        torch_threads: intra-op threads of each scoring thread's forward pass; None picks
            :func:`default_torch_threads` for the batches being scored in this process now.
        lock_timeout_s: seconds to wait for another run scoring the same batch.
        batch_date_source: where the batch's date (its partition and the marker's ``date``) comes
            from: "auto", "timestamp", "id" or "arrival" (see :mod:`tasks.batch_dates`).

    Returns:
        The success marker (a dict): batch_id, status ("scored", or "skipped" when already scored),
        rows_in, rows_out, flagged, input_path, input_sha256, input_fingerprint, model_version,
        output, date, date_source, scored_at, seconds.
    """
    _check_positive("chunk_rows", chunk_rows)
    _check_positive("top_k", top_k)
    _check_positive("scoring_threads", scoring_threads)
    if torch_threads is not None:
        _check_positive("torch_threads", torch_threads)
    batch = batch if isinstance(batch, BatchRef) else BatchRef(**batch)
    with storage_errors(layout.models, "loading the model"):
        detector, version = load_model(layout.models, model_version, options)
    with storage_errors(batch.path, f"scoring batch {batch.batch_id!r}"):
        return _score_locked(
            batch,
            layout,
            detector,
            version,
            passthrough=passthrough,
            timestamp_column=timestamp_column,
            numeric=numeric,
            categorical=categorical,
            missing_tokens=missing_tokens,
            chunk_rows=chunk_rows,
            top_k=top_k,
            force=force,
            options=options,
            scoring_threads=scoring_threads,
            torch_threads=torch_threads,
            lock_timeout_s=lock_timeout_s,
            batch_date_source=batch_date_source,
        )


class BatchChangedError(RetryableError):
    """The batch's files changed while it was being scored (a writer was still delivering it)."""


def _remove_previous_output(
    previous: dict[str, Any] | None,
    output: str,
    layout: StorageLayout,
    batch_id: str,
    options: StorageOptions,
) -> None:
    """Remove the batch's earlier output when it lies elsewhere (the batch moved partition), so
    the batch keeps one output. Only a scored file of this batch inside this root is ever removed:
    an earlier marker's path that maps outside the root (a copied root's original, a marker of an
    older version) or onto the new output through another spelling is left alone."""
    if previous is None or previous.get("output") is None:
        return
    earlier = relative_path(layout, previous["output"], options)
    if earlier == relative_path(layout, output, options):
        return
    if not owned_output(layout, batch_id, earlier) or same_file(
        previous["output"], output, options
    ):
        return
    remove(previous["output"], options)


def _score_locked(
    batch: BatchRef,
    layout: StorageLayout,
    detector: Any,
    version: str,
    *,
    passthrough: Sequence[str],
    timestamp_column: str | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str],
    chunk_rows: int,
    top_k: int,
    force: bool,
    options: StorageOptions,
    scoring_threads: int,
    torch_threads: int | None,
    lock_timeout_s: float,
    batch_date_source: str,
) -> dict[str, Any]:
    """:func:`score_batch` once the model is loaded: lock, skip or score, commit, mark."""
    with BatchLock(layout.scoring_lock(batch.batch_id), options, lock_timeout_s) as lock:
        started = time.perf_counter()
        input_fingerprint = fingerprint(batch.path, options)
        previous = read_marker(layout, batch.batch_id, options)
        if not force and is_scored_by(previous, version, batch.path, options, input_fingerprint):
            return {**previous, "status": "skipped"}

        dated = resolve_batch_date(
            batch.batch_id, batch.path, layout, batch_date_source, timestamp_column, options
        )
        if dated.date is None:
            raise undated_error(batch.batch_id, batch_date_source, timestamp_column)
        date = dated.date
        output = layout.scored_file(date, batch.batch_id)
        remove_batch_temporaries(layout, batch.batch_id, options)
        scored_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        schema = output_schema(
            open_parquet(batch_files(batch.path, options)[0], options).schema_arrow,
            passthrough,
            int(detector.latent_dim_),
        )
        counters = {"rows_in": 0, "rows_out": 0, "flagged": 0}
        columns = list(dict.fromkeys([*passthrough, *numeric, *categorical]))
        with contextlib.ExitStack() as stages:
            active = stages.enter_context(_count_active_scorer())
            hasher = stages.enter_context(ThreadPoolExecutor(1, "aeflow-sha256"))
            # The checksum reads the input once more; it runs beside the scoring, not before it.
            input_sha256 = hasher.submit(checksum, batch.path, options)
            # A pipeline: a reading thread, `scoring_threads` scoring threads, and this thread
            # writing; each stage is closed on the way out, so an error anywhere stops them all.
            chunks = stages.enter_context(
                contextlib.closing(
                    prefetch(
                        iter_record_batches(
                            batch.path, options, columns=columns, batch_rows=chunk_rows
                        ),
                        name="read",
                    )
                )
            )
            scored = stages.enter_context(
                contextlib.closing(
                    score_record_batches(
                        chunks,
                        detector,
                        schema,
                        model_version=version,
                        batch_id=batch.batch_id,
                        passthrough=passthrough,
                        numeric=numeric,
                        categorical=categorical,
                        missing_tokens=missing_tokens,
                        top_k=top_k,
                        scored_at=scored_at,
                        counters=counters,
                        scoring_threads=scoring_threads,
                        torch_threads=torch_threads
                        or default_torch_threads(active, scoring_threads),
                    )
                )
            )
            write_parquet_atomic(
                _slowed_for_tests(scored),
                output,
                schema=schema,
                options=options,
                writer_options={"use_dictionary": list(DICTIONARY_COLUMNS)},
            )
            input_sha256 = input_sha256.result()
        if fingerprint(batch.path, options) != input_fingerprint:
            remove(output, options)
            raise BatchChangedError(
                f"batch {batch.batch_id} changed while it was being scored ({batch.path}); "
                "its output was removed, run the score again"
            )
        _remove_previous_output(previous, output, layout, batch.batch_id, options)
        marker = {
            "batch_id": batch.batch_id,
            "status": "scored",
            "rows_in": counters["rows_in"],
            "rows_out": counters["rows_out"],
            "flagged": counters["flagged"],
            "input_path": batch.path,
            "input_sha256": input_sha256,
            "input_fingerprint": input_fingerprint,
            "model_version": version,
            "output": output,
            "date": date,
            "date_source": dated.source,
            "scored_at": scored_at.isoformat(),
            "seconds": round(time.perf_counter() - started, 3),
        }
        lock.check()
        write_marker(marker, layout, options)
        return marker


@task(name="score-batch", cache_policy=NO_CACHE, **storage_retry_options())
def score_batch_task(
    batch: dict[str, Any],
    root: str,
    dataset: str,
    passthrough: list[str],
    timestamp_column: str | None,
    numeric: list[str],
    categorical: list[str],
    missing_tokens: list[str],
    model_version: str | None = None,
    chunk_rows: int = 65_536,
    top_k: int = 3,
    force: bool = False,
    options: StorageOptions = None,
    torch_threads: int | None = None,
    batch_date_source: str = "auto",
) -> dict[str, Any]:
    """:func:`score_batch` as a Prefect task (arguments are paths and JSON, never frames)."""
    return score_batch(
        BatchRef(**batch),
        StorageLayout(root, dataset),
        passthrough,
        timestamp_column,
        numeric,
        categorical,
        missing_tokens,
        model_version,
        chunk_rows,
        top_k,
        force,
        options,
        torch_threads=torch_threads,
        batch_date_source=batch_date_source,
    )


def find_pending_batches(
    batches: Sequence[dict[str, Any]],
    layout: StorageLayout,
    model_version: str,
    force: bool = False,
    options: StorageOptions = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split incoming batches into (to score, already scored by ``model_version``).

    A batch counts as scored when its success marker names the same model version and the same
    input (:func:`is_scored_by`): a changed file under the same name is scored again.
    """
    pending, done = [], []
    for batch in batches:
        marker = read_marker(layout, batch["batch_id"], options)
        if not force and is_scored_by(marker, model_version, batch["path"], options):
            done.append({**marker, "status": "skipped"})
        else:
            pending.append(batch)
    return pending, done


@task(name="find-pending-batches", cache_policy=NO_CACHE, **storage_retry_options())
def find_pending_batches_task(
    batches: list[dict[str, Any]],
    root: str,
    dataset: str,
    model_version: str | None,
    force: bool = False,
    options: StorageOptions = None,
) -> dict[str, Any]:
    """{"model_version": resolved version, "pending": [...], "skipped": [...]}."""
    layout = StorageLayout(root, dataset)
    with storage_errors(root, "reading the success markers"):
        version = ModelRegistry(layout.models, options).resolve(model_version)
        pending, skipped = find_pending_batches(batches, layout, version, force, options)
    return {"model_version": version, "pending": pending, "skipped": skipped}
