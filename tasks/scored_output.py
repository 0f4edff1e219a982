"""The scored file: its schema, and one input record batch scored into one output record batch.

Batch scoring (tasks/scoring.py) streams every chunk of a batch through the three stages of
:func:`score_chunk`, each on its own thread: :func:`prepare_chunk` (the Arrow replay into the
preprocessed matrix, in the reading thread), :func:`score_prepared` (the model, in the scoring
threads) and :func:`chunk_output` (the output record batch, in the writing thread). The rows are
scored with :func:`tasks.row_scoring.score_rows`; the online API (serving/) scores each request
with that same function, so a row gets the same bits online and in a batch. The columns and their
units are in docs/outputs.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from models.explanations import ScoreResult
from tasks.row_scoring import preprocess_rows, score_rows
from tasks.settings import ColumnsSettings
from tasks.streaming import ordered_map

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
# Output columns with few distinct values per file. Dictionary-encoding only these (not the float
# scores and latent features, which are all distinct) makes the write 3x cheaper and the file
# smaller (docs/benchmarks/score_speed.md).
DICTIONARY_COLUMNS = ("is_anomaly", "threshold", "top_features", *TRAILING_COLUMNS)


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


@dataclass(frozen=True)
class ChunkScoring:
    """What every chunk of one batch is scored with: the model's version, the batch, the input
    columns (passthrough ones copied to the output), ``top_k`` columns named per row, and the
    scoring time every row carries."""

    model_version: str
    batch_id: str
    passthrough: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    scored_at: dt.datetime
    missing_tokens: tuple[str, ...] = ()
    top_k: int = 3

    @classmethod
    def for_batch(
        cls,
        *,
        columns: ColumnsSettings,
        top_k: int,
        model_version: str,
        batch_id: str,
        scored_at: dt.datetime,
    ) -> ChunkScoring:
        """The chunk settings of a batch scored with a config's ``columns``."""
        return cls(
            model_version=model_version,
            batch_id=batch_id,
            passthrough=tuple(columns.passthrough),
            numeric=tuple(columns.numeric),
            categorical=tuple(columns.categorical),
            scored_at=scored_at,
            missing_tokens=tuple(columns.missing_values),
            top_k=top_k,
        )

    @property
    def input_columns(self) -> list[str]:
        """The columns read from the batch, each once."""
        return list(dict.fromkeys([*self.passthrough, *self.numeric, *self.categorical]))


def score_arrays(result: Any, threshold: float) -> list[pa.Array]:
    """The :data:`SCORE_COLUMNS` of scored rows (a :class:`models.explanations.ScoreResult`), in
    that order: what the scored file holds and ``aeflow api``'s /score answers."""
    return [
        pa.array(np.asarray(result.scores, dtype=np.float64)),
        pa.array(np.asarray(result.percentiles, dtype=np.float64)),
        pa.array(np.asarray(result.is_anomaly, dtype=bool)),
        pa.repeat(pa.scalar(float(threshold), pa.float64()), len(result.scores)),
        pa.array(result.top_features, type=pa.string()),
    ]


def latent_arrays(latent: np.ndarray) -> list[pa.Array]:
    """z_0..z_{k-1}: one float32 array per column of the (n, k) encoded features."""
    latent = np.asarray(latent, dtype=np.float32)
    return [pa.array(latent[:, i]) for i in range(latent.shape[1])]


class PreparedChunk(NamedTuple):
    """An input record batch and its preprocessed matrix (:func:`prepare_chunk`; ``features`` is
    None when the model scores it through a frame, or when it has no rows)."""

    record_batch: pa.RecordBatch
    features: np.ndarray | None


def prepare_chunk(
    record_batch: pa.RecordBatch, *, detector: Any, chunk: ChunkScoring
) -> PreparedChunk:
    """The reading stage's part of scoring a chunk: its Arrow columns replayed into the model's
    preprocessed matrix (:func:`tasks.row_scoring.preprocess_rows`). Raises ValueError naming the
    column for a missing feature column or a numeric one that cannot be read as numbers."""
    if not record_batch.num_rows:
        return PreparedChunk(record_batch, None)
    features = preprocess_rows(
        record_batch, detector, chunk.numeric, chunk.categorical, chunk.missing_tokens
    )
    return PreparedChunk(record_batch, features)


def prepare_chunks(
    record_batches: Iterable[pa.RecordBatch], *, detector: Any, chunk: ChunkScoring
) -> Iterator[PreparedChunk]:
    """:func:`prepare_chunk` of each record batch, in order (run in the reading thread)."""
    for record_batch in record_batches:
        yield prepare_chunk(record_batch, detector=detector, chunk=chunk)


def score_prepared(prepared: PreparedChunk, *, detector: Any, chunk: ChunkScoring) -> ScoreResult:
    """The scoring stage's part: the chunk's rows scored (:func:`tasks.row_scoring.score_rows`
    from the prepared matrix: the same bits as from the record batch)."""
    return score_rows(
        prepared.record_batch,
        detector,
        chunk.numeric,
        chunk.categorical,
        chunk.missing_tokens,
        chunk.top_k,
        features=prepared.features,
    )


def chunk_output(
    record_batch: pa.RecordBatch,
    result: ScoreResult,
    *,
    threshold: float,
    schema: pa.Schema,
    chunk: ChunkScoring,
) -> pa.RecordBatch:
    """The writing stage's part: one output record batch of ``schema`` (n rows, same order): the
    passthrough columns of ``record_batch``, then ``result``'s outputs, then the constants."""
    n = record_batch.num_rows
    passthrough = chunk.passthrough
    latent_dim = sum(1 for name in schema.names[len(passthrough) :] if name.startswith("z_"))
    latent = np.asarray(result.latent, dtype=np.float32)
    if latent.shape != (n, latent_dim):
        raise ValueError(
            f"the model returned latent features of shape {latent.shape}, the output schema "
            f"expects ({n}, {latent_dim}); the model and the schema are out of step"
        )
    arrays = [_as_field(record_batch.column(name), schema.field(name)) for name in passthrough]
    arrays += score_arrays(result, threshold)
    arrays += latent_arrays(latent)
    arrays += [
        pa.repeat(pa.scalar(chunk.model_version, pa.string()), n),
        pa.repeat(pa.scalar(chunk.batch_id, pa.string()), n),
        pa.repeat(pa.scalar(chunk.scored_at, pa.timestamp("us", tz="UTC")), n),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def score_chunk(
    record_batch: pa.RecordBatch, *, detector: Any, schema: pa.Schema, chunk: ChunkScoring
) -> pa.RecordBatch:
    """One input record batch (n rows) -> one output record batch of ``schema`` (n rows, same
    order): the passthrough columns, then ``detector.score``'s outputs, then the constants. The
    three stages in one call; :func:`score_record_batches` runs them on three threads."""
    prepared = prepare_chunk(record_batch, detector=detector, chunk=chunk)
    result = score_prepared(prepared, detector=detector, chunk=chunk)
    return chunk_output(
        record_batch, result, threshold=detector.threshold_, schema=schema, chunk=chunk
    )


def _as_field(column: pa.Array, field: pa.Field) -> pa.Array:
    """A passthrough column in the output schema's type: a part of a folder batch may hold an
    id as int64 where the batch's unified schema (:func:`tasks.io.read_schema`) has double."""
    return column if column.type.equals(field.type) else column.cast(field.type)


def score_record_batches(
    prepared_chunks: Iterable[PreparedChunk],
    *,
    detector: Any,
    schema: pa.Schema,
    chunk: ChunkScoring,
    counters: dict[str, int] | None = None,
    scoring_threads: int = 1,
    torch_threads: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Score prepared chunks (:func:`prepare_chunks`, typically run in a reading thread) into
    output record batches of ``schema`` (one per non-empty input, rows in the same order), with
    ``scoring_threads`` chunks scored at once; each output batch is assembled in the thread that
    iterates (the writer's).

    ``counters`` (when given) accumulates ``rows_in``, ``rows_out`` and ``flagged``.
    ``torch_threads`` sets the intra-op threads of each scoring thread.
    """
    counters = counters if counters is not None else {}
    for key in ("rows_in", "rows_out", "flagged"):
        counters.setdefault(key, 0)

    def non_empty() -> Iterator[PreparedChunk]:
        for prepared in prepared_chunks:
            counters["rows_in"] += prepared.record_batch.num_rows
            if prepared.record_batch.num_rows:
                yield prepared

    def set_torch_threads() -> None:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)  # this thread's OpenMP pool only

    def score_one(prepared: PreparedChunk) -> tuple[pa.RecordBatch, ScoreResult]:
        # Only the record batch goes on: the preprocessed matrix is freed once scored.
        return prepared.record_batch, score_prepared(prepared, detector=detector, chunk=chunk)

    threshold = detector.threshold_
    for record_batch, result in ordered_map(
        score_one, non_empty(), scoring_threads, set_torch_threads, "score"
    ):
        scored = chunk_output(record_batch, result, threshold=threshold, schema=schema, chunk=chunk)
        counters["rows_out"] += scored.num_rows
        counters["flagged"] += int(np.count_nonzero(result.is_anomaly))
        yield scored
