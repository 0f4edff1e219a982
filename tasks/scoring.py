"""Scoring: stream a batch through the model and commit its output exactly once.

The output of a batch has a deterministic name, ``scored/<dataset>/date=YYYY-MM-DD/<batch_id>.parquet``.
It is streamed (record batch in, record batch out) into a temporary file that is committed by rename
(or one PUT), and only then is the success marker ``scored/<dataset>/_success/<batch_id>.json``
written. A batch whose marker names the same model version and input checksum is skipped unless
forced; a re-run replaces the output file, so nothing is ever appended twice.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.registry import ModelRegistry
from tasks.frames import feature_frame
from tasks.io import (
    BatchRef,
    StorageLayout,
    StorageOptions,
    batch_files,
    checksum,
    iter_record_batches,
    open_parquet,
    read_json,
    remove,
    write_json_atomic,
    write_parquet_atomic,
)

SCORE_COLUMNS = (
    "anomaly_score",
    "anomaly_percentile",
    "is_anomaly",
    "threshold",
    "top_features",
)
TRAILING_COLUMNS = ("model_version", "batch_id", "scored_at")


def output_schema(
    input_schema: pa.Schema, passthrough: Sequence[str], latent_dim: int
) -> pa.Schema:
    """The scored file's schema: passthrough columns as in the input, then the model outputs."""
    fields = [input_schema.field(name) for name in passthrough]
    fields += [
        pa.field("anomaly_score", pa.float64()),
        pa.field("anomaly_percentile", pa.float64()),
        pa.field("is_anomaly", pa.bool_()),
        pa.field("threshold", pa.float64()),
        pa.field("top_features", pa.string()),
    ]
    fields += [pa.field(f"z_{i}", pa.float32()) for i in range(latent_dim)]
    fields += [
        pa.field("model_version", pa.string()),
        pa.field("batch_id", pa.string()),
        pa.field("scored_at", pa.timestamp("us", tz="UTC")),
    ]
    return pa.schema(fields)


def _earliest_from_statistics(path: str, column: str, options: StorageOptions) -> Any | None:
    """The column's minimum from Parquet row-group statistics, or None when any group lacks them."""
    earliest = None
    for file in batch_files(path, options):
        metadata = open_parquet(file, options).metadata
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            chunks = [
                row_group.column(j)
                for j in range(row_group.num_columns)
                if row_group.column(j).path_in_schema == column
            ]
            stats = chunks[0].statistics if chunks else None
            if stats is None or not stats.has_min_max:
                return None
            earliest = stats.min if earliest is None else min(earliest, stats.min)
    return earliest


def batch_date(path: str, timestamp_column: str | None, options: StorageOptions = None) -> str:
    """The batch's date partition: the UTC date of its earliest timestamp.

    Parquet statistics answer without reading data; without them the one column is scanned. A batch
    with no timestamp column (or no timestamps) gets today's UTC date.
    """
    earliest = None
    if timestamp_column:
        earliest = _earliest_from_statistics(path, timestamp_column, options)
        if earliest is None:
            minima = [
                pc.min(rb.column(0)).as_py()
                for rb in iter_record_batches(path, options, columns=[timestamp_column])
            ]
            minima = [m for m in minima if m is not None]
            earliest = min(minima) if minima else None
    if isinstance(earliest, dt.datetime):
        if earliest.tzinfo is not None:
            earliest = earliest.astimezone(dt.UTC)
        return earliest.date().isoformat()
    if isinstance(earliest, dt.date):
        return earliest.isoformat()
    return dt.datetime.now(dt.UTC).date().isoformat()


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


def _scored_record_batches(
    batch: BatchRef,
    detector: Any,
    model_version: str,
    schema: pa.Schema,
    passthrough: Sequence[str],
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str],
    chunk_rows: int,
    top_k: int,
    scored_at: dt.datetime,
    options: StorageOptions,
    counters: dict[str, int],
) -> Iterator[pa.RecordBatch]:
    columns = list(dict.fromkeys([*passthrough, *numeric, *categorical]))
    threshold = float(detector.threshold_)
    for record_batch in iter_record_batches(
        batch.path, options, columns=columns, batch_rows=chunk_rows
    ):
        n = record_batch.num_rows
        counters["rows_in"] += n
        if n == 0:
            continue
        features = feature_frame(record_batch, numeric, categorical, missing_tokens)
        result = detector.score(features, top_k=top_k)
        arrays = [record_batch.column(name) for name in passthrough]
        arrays += [
            pa.array(np.asarray(result.scores, dtype=np.float64)),
            pa.array(np.asarray(result.percentiles, dtype=np.float64)),
            pa.array(np.asarray(result.is_anomaly, dtype=bool)),
            pa.array(np.full(n, threshold, dtype=np.float64)),
            pa.array(_top_features_strings(result.top_features), type=pa.string()),
        ]
        latent = np.asarray(result.latent, dtype=np.float32)
        arrays += [pa.array(latent[:, i]) for i in range(latent.shape[1])]
        arrays += [
            pa.array(np.full(n, model_version, dtype=object), type=pa.string()),
            pa.array(np.full(n, batch.batch_id, dtype=object), type=pa.string()),
            pa.array(np.full(n, scored_at), type=pa.timestamp("us", tz="UTC")),
        ]
        counters["rows_out"] += n
        counters["flagged"] += int(np.count_nonzero(result.is_anomaly))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _top_features_strings(top_features: Any) -> list[str]:
    if len(top_features) and not isinstance(top_features[0], str):
        return [",".join(map(str, row)) for row in top_features]
    return list(top_features)


def score_batch(
    batch: BatchRef,
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
) -> dict[str, Any]:
    """Score one batch with the champion (or ``model_version``) and commit it exactly once.

    Returns the success marker: batch_id, status ("scored" or "skipped"), rows_in, rows_out,
    flagged, input_sha256, model_version, output path, scored_at.
    """
    detector, version = load_model(layout.models, model_version, options)
    input_sha256 = checksum(batch.path, options)
    marker_url = layout.success_marker(batch.batch_id)
    previous = read_json(marker_url, options)
    if (
        previous is not None
        and not force
        and previous.get("model_version") == version
        and previous.get("input_sha256") == input_sha256
    ):
        return {**previous, "status": "skipped"}

    date = batch_date(batch.path, timestamp_column, options)
    output = layout.scored_file(date, batch.batch_id)
    scored_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    schema = output_schema(
        open_parquet(batch_files(batch.path, options)[0], options).schema_arrow,
        passthrough,
        int(detector.latent_dim_),
    )
    counters = {"rows_in": 0, "rows_out": 0, "flagged": 0}
    stream = _scored_record_batches(
        batch, detector, version, schema, passthrough, numeric, categorical, missing_tokens,
        chunk_rows, top_k, scored_at, options, counters,
    )  # fmt: skip
    write_parquet_atomic(stream, output, schema=schema, options=options)
    if previous is not None and previous.get("output") not in (None, output):
        remove(previous["output"], options)  # the batch moved partition: keep one output only
    marker = {
        "batch_id": batch.batch_id,
        "status": "scored",
        "rows_in": counters["rows_in"],
        "rows_out": counters["rows_out"],
        "flagged": counters["flagged"],
        "input_path": batch.path,
        "input_sha256": input_sha256,
        "model_version": version,
        "output": output,
        "date": date,
        "scored_at": scored_at.isoformat(),
    }
    write_json_atomic(marker, marker_url, options)
    return marker


@task(name="score-batch", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
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
) -> dict[str, Any]:
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
    )


def find_pending_batches(
    batches: Sequence[dict[str, Any]],
    layout: StorageLayout,
    model_version: str,
    force: bool = False,
    options: StorageOptions = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split incoming batches into (to score, already scored by ``model_version``).

    A batch counts as scored when its success marker names the same model version and the same input
    checksum: a changed file under the same name is scored again.
    """
    pending, done = [], []
    for batch in batches:
        marker = read_json(layout.success_marker(batch["batch_id"]), options)
        if (
            not force
            and marker is not None
            and marker.get("model_version") == model_version
            and marker.get("input_sha256") == checksum(batch["path"], options)
        ):
            done.append({**marker, "status": "skipped"})
        else:
            pending.append(batch)
    return pending, done


@task(name="find-pending-batches", cache_policy=NO_CACHE)
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
    version = ModelRegistry(layout.models, options).resolve(model_version)
    pending, skipped = find_pending_batches(batches, layout, version, force, options)
    return {"model_version": version, "pending": pending, "skipped": skipped}
