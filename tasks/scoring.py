"""Scoring: stream a batch through the model and commit its output exactly once.

One batch, :func:`score_batch`:

1. Take the batch's lock (:class:`tasks.locks.BatchLock`), so concurrent runs never score a batch twice at once.
2. Skip it when its success marker names the same model version and the same input (the cheap
   :func:`tasks.io.fingerprint` first, the sha256 :func:`tasks.io.checksum` when they differ:
   :func:`tasks.markers.records_bytes_of`), unless forced.
3. Stream it: Parquet record batches -> feature frame -> ``detector.score`` (one torch forward
   pass in ``inference_mode`` per chunk, on the GPU when present; :mod:`tasks.scored_output`) ->
   output record batch -> an incremental ParquetWriter. Reading, scoring and writing run in three
   threads joined by bounded queues (:mod:`tasks.streaming`), so memory holds a few chunks
   whatever the file size.
4. Commit the output under its deterministic name,
   ``scored/<dataset>/date=YYYY-MM-DD/<batch_id>.parquet``, by rename (local) or one PUT (object
   stores); a re-run replaces it, nothing is ever appended.
5. Only then write the success marker ``scored/<dataset>/_success/<batch_id>.json``
   (:class:`tasks.records.ScoreMarker`): rows in and out, flagged rows, input sha256 and
   fingerprint, model version, output path.

A crash anywhere before step 5 leaves no marker, so the next run scores the batch again; the output
schema is documented in docs/outputs.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.storage_errors import storage_errors
from tasks.batch_dates import resolve_batch_date, undated_error
from tasks.incoming import BatchRef
from tasks.io import (
    RetryableError,
    Storage,
    checksum,
    exists,
    fingerprint,
    iter_record_batches,
    read_schema,
    remove,
    remove_batch_temporaries,
    storage_retry_options,
    write_parquet_atomic,
)
from tasks.locks import BatchLock
from tasks.markers import (
    owned_output,
    read_marker,
    records_bytes_of,
    same_file,
    write_marker,
)
from tasks.model_cache import active_scorer, default_torch_threads, load_model
from tasks.records import SCORED, SKIPPED, ScoreMarker
from tasks.scored_output import (
    DICTIONARY_COLUMNS,
    ChunkScoring,
    output_schema,
    prepare_chunks,
    score_record_batches,
)
from tasks.settings import ColumnsSettings, ScoringSettings
from tasks.streaming import prefetch

# Test hook: seconds to sleep after writing each scored chunk, so a test can kill a run part-way
# through a small batch. Unset (the default) costs nothing.
SLOW_WRITE_ENV = "AEFLOW_TEST_SLOW_SCORING_S"


@dataclass(frozen=True)
class ScoringRuntime:
    """How one process scores a batch (not part of the config: benchmarks and tests tune it).

    Attributes:
        scoring_threads: chunks of this batch scored at once. More than one overlaps a chunk's
            GIL-bound preprocessing (pandas, scikit-learn) with another's forward pass, which can
            help on idle machines with spare cores, at the cost of one more chunk in memory; on a
            busy 2-core machine it was slower and used 25% more memory
            (docs/benchmarks/score_speed.md), so more cores are better used by scoring several
            batches at once (flow workers, Dask workers).
        torch_threads: intra-op threads of each scoring thread's forward pass; None picks
            :func:`tasks.model_cache.default_torch_threads` for the batches scored in this
            process now.
        lock_timeout_s: seconds to wait for another run scoring the same batch.
    """

    scoring_threads: int = 1
    torch_threads: int | None = None
    lock_timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        _check_positive("scoring_threads", self.scoring_threads)
        if self.torch_threads is not None:
            _check_positive("torch_threads", self.torch_threads)


def _slowed_for_tests(record_batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    delay = float(os.environ.get(SLOW_WRITE_ENV, "0") or 0)
    for record_batch in record_batches:
        yield record_batch
        if delay > 0:
            time.sleep(delay)


# ----------------------------------------------------------------------------------- exactly once
def is_scored_by(
    marker: ScoreMarker | None,
    model_version: str,
    path: str,
    storage: Storage,
    input_fingerprint: str | None = None,
) -> bool:
    """Whether a success marker records ``path``'s current bytes scored by ``model_version``, and
    its scored file is still there (one deleted by hand is scored again)."""
    if marker is None or marker.model_version != model_version:
        return False
    if not marker.output or not exists(marker.output, storage.options):
        return False
    return records_bytes_of(marker, path, storage.options, input_fingerprint)


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def score_batch(
    *,
    batch: BatchRef,
    storage: Storage,
    columns: ColumnsSettings,
    scoring: ScoringSettings,
    model_version: str | None = None,
    force: bool = False,
    runtime: ScoringRuntime = ScoringRuntime(),
) -> ScoreMarker:
    """Score one batch with the champion (or ``model_version``) and commit it exactly once.

    ``columns``: the model's input columns, the passthrough columns (id, timestamp) and where the
    batch's date comes from (``batch_date``, see :mod:`tasks.batch_dates`); ``scoring``: rows per
    streamed chunk (memory scales with it) and ``top_k``; ``force`` scores even when the marker
    says this model already scored these bytes.

    Returns the success marker; its status is "skipped" when the batch was already scored.
    """
    _check_positive("chunk_rows", scoring.chunk_rows)
    _check_positive("top_k", scoring.top_k)
    if storage.relative(batch.path) is None:
        # Its marker could not name it relative to the root: refuse before any output is written.
        raise ValueError(
            f"batch {batch.batch_id!r} at {batch.path} is outside the storage root {storage.root}: "
            f"batches are scored from {storage.incoming}; move or copy it there (`aeflow ingest` "
            "does both) and score again"
        )
    with storage_errors(storage.models, "loading the model"):
        detector, version = load_model(storage, model_version)
    with storage_errors(batch.path, f"scoring batch {batch.batch_id!r}"):
        return _score_locked(
            _Job(batch, storage, columns, scoring, version, force, runtime), detector
        )


class BatchChangedError(RetryableError):
    """The batch's files changed while it was being scored (a writer was still delivering it)."""


@dataclass(frozen=True)
class _Job:
    """One batch to score, as :func:`score_batch` was asked (the model version resolved)."""

    batch: BatchRef
    storage: Storage
    columns: ColumnsSettings
    scoring: ScoringSettings
    version: str
    force: bool
    runtime: ScoringRuntime


def _remove_previous_output(
    previous: ScoreMarker | None, output: str, storage: Storage, batch_id: str
) -> None:
    """Remove the batch's earlier output when it lies elsewhere (the batch moved partition), so
    the batch keeps one output. Only a scored file of this batch inside this root is ever removed:
    an earlier marker's path that maps outside the root (a copied root's original, a marker of an
    older version) or onto the new output through another spelling is left alone."""
    if previous is None or previous.output is None:
        return
    options = storage.options
    earlier = storage.relative(previous.output)
    if earlier == storage.relative(output):
        return
    if not owned_output(storage, batch_id, earlier) or same_file(previous.output, output, options):
        return
    remove(previous.output, options)


def _score_locked(job: _Job, detector: Any) -> ScoreMarker:
    """:func:`score_batch` once the model is loaded: lock, skip or score, commit, mark."""
    batch, storage, options = job.batch, job.storage, job.storage.options
    lock_url = storage.scoring_lock(batch.batch_id)
    with BatchLock(lock_url, options, job.runtime.lock_timeout_s) as lock:
        started = time.perf_counter()
        input_fingerprint = fingerprint(batch.path, options)
        previous = read_marker(storage, batch.batch_id)
        if not job.force and is_scored_by(
            previous, job.version, batch.path, storage, input_fingerprint
        ):
            return previous.replace(status=SKIPPED)

        source, timestamp_column = job.columns.batch_date, job.columns.timestamp
        dated = resolve_batch_date(batch, storage=storage, columns=job.columns)
        if dated.date is None:
            raise undated_error(batch.batch_id, source, timestamp_column)
        output = storage.scored_file(dated.date, batch.batch_id)
        remove_batch_temporaries(storage, batch.batch_id)
        scored_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        chunk = ChunkScoring.for_batch(
            columns=job.columns,
            top_k=job.scoring.top_k,
            model_version=job.version,
            batch_id=batch.batch_id,
            scored_at=scored_at,
        )
        schema = output_schema(
            read_schema(batch.path, options),
            chunk.passthrough,
            int(detector.latent_dim_),
        )
        counters = {"rows_in": 0, "rows_out": 0, "flagged": 0}
        with contextlib.ExitStack() as stages:
            active = stages.enter_context(active_scorer())
            hasher = stages.enter_context(ThreadPoolExecutor(1, "aeflow-sha256"))
            # The checksum reads the input once more; it runs beside the scoring, not before it.
            input_sha256 = hasher.submit(checksum, batch.path, options)
            # A pipeline: a reading thread (Parquet decoding and the Arrow replay into the model's
            # preprocessed matrix), `scoring_threads` scoring threads (the model), and this thread
            # assembling and writing the output; each stage is closed on the way out, so an error
            # anywhere stops them all.
            chunks = stages.enter_context(
                contextlib.closing(
                    prefetch(
                        prepare_chunks(
                            iter_record_batches(
                                batch.path,
                                options,
                                columns=chunk.input_columns,
                                batch_rows=job.scoring.chunk_rows,
                            ),
                            detector=detector,
                            chunk=chunk,
                        ),
                        # One prepared chunk waiting (64 MB for 65,536 rows of 246 features):
                        # the replay is faster than the model, so more would only hold memory.
                        depth=1,
                        name="read",
                    )
                )
            )
            threads = job.runtime.scoring_threads
            scored = stages.enter_context(
                contextlib.closing(
                    score_record_batches(
                        chunks,
                        detector=detector,
                        schema=schema,
                        chunk=chunk,
                        counters=counters,
                        scoring_threads=threads,
                        torch_threads=job.runtime.torch_threads
                        or default_torch_threads(active, threads),
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
        _remove_previous_output(previous, output, storage, batch.batch_id)
        marker = ScoreMarker(
            batch_id=batch.batch_id,
            status=SCORED,
            rows_in=counters["rows_in"],
            rows_out=counters["rows_out"],
            flagged=counters["flagged"],
            input_path=batch.path,
            input_sha256=input_sha256,
            input_fingerprint=input_fingerprint,
            model_version=job.version,
            output=output,
            date=dated.date,
            date_source=dated.source,
            scored_at=scored_at.isoformat(),
            seconds=round(time.perf_counter() - started, 3),
        )
        lock.check()
        write_marker(marker, storage)
        return marker


score_batch_task = task(
    score_batch, name="score-batch", cache_policy=NO_CACHE, **storage_retry_options()
)


@dataclass(frozen=True)
class PendingBatches:
    """What a run scores: the resolved model version, the batches to score, and the markers of
    those that version already scored from the same bytes."""

    model_version: str
    pending: list[BatchRef]
    skipped: list[ScoreMarker]


def find_pending_batches(
    *,
    batches: Sequence[BatchRef],
    storage: Storage,
    model_version: str | None,
    force: bool = False,
) -> PendingBatches:
    """Split incoming batches into (to score, already scored by the model: ``model_version`` or
    the champion).

    A batch counts as scored when its success marker names the same model version and the same
    input (:func:`is_scored_by`): a changed file under the same name is scored again.
    """
    with storage_errors(storage.root, "reading the success markers"):
        version = storage.registry().resolve(model_version)
        pending, done = [], []
        for batch in batches:
            marker = read_marker(storage, batch.batch_id)
            if not force and is_scored_by(marker, version, batch.path, storage):
                done.append(marker.replace(status=SKIPPED))
            else:
                pending.append(batch)
    return PendingBatches(model_version=version, pending=pending, skipped=done)


find_pending_batches_task = task(
    find_pending_batches,
    name="find-pending-batches",
    cache_policy=NO_CACHE,
    **storage_retry_options(),
)
