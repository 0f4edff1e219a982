"""Scoring Arrow rows: the one path that batch scoring's chunks and the online service's requests take.

:func:`score_rows` turns an Arrow record batch (n rows) into a :class:`models.explanations.ScoreResult`;
:func:`preprocess_rows` is its first step alone (batch scoring runs it in its reading thread).
Its preprocessing is an :class:`ArrowReplay`, built once per model and column set and kept with
the model: it reads each feature column from Arrow straight into the numpy replay of the fitted
preprocessor (:meth:`models.fast_preprocessing.FastPreprocessor.transform_columns`), with the
column lookups (which value block a column feeds, each categorical level's one-hot position)
resolved at build time. Each step works on whole columns, so a row gets the same bits alone
(a request of one row) and inside a 65,536-row chunk.

The values are those of :func:`tasks.frames.feature_frame` followed by the detector's own
preprocessing (the same casts, missing-value tokens, imputation, scaling and one-hot positions);
what it saves is the pandas frame in between, whose fixed cost per call (about a millisecond)
outweighs the arithmetic on a few rows. A model whose preprocessor has no numpy replay, or whose
columns differ from the ones asked for, is scored through the frame (:meth:`detector.score`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.detector import INPUT_CLIP
from models.explanations import ScoreResult
from models.fast_preprocessing import FastPreprocessor
from tasks.frames import (
    as_float64,
    feature_frame,
    missing_columns_error,
    null_tokens,
    token_array,
)


def _is_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


class ArrowReplay:
    """Arrow columns -> a fitted detector's preprocessed matrix, without a pandas frame.

    Args:
        fast: the detector's :meth:`fast_preprocessor`.
        columns: the feature columns a batch must carry (the config's numeric and categorical).
        missing_tokens: text meaning "missing" (whitespace around it ignored) in text columns.
    """

    def __init__(
        self, fast: FastPreprocessor, columns: Sequence[str], missing_tokens: Sequence[str]
    ):
        self.fast = fast
        self.columns = list(columns)
        self.tokens = token_array(missing_tokens)

    def features(self, data: pa.RecordBatch | pa.Table) -> np.ndarray:
        """(n rows) -> (n, n_features) float32, the matrix the detector's forward pass takes.

        Raises ValueError naming the column for a missing feature column or a numeric column
        that cannot be read as numbers (as :func:`tasks.frames.feature_frame` does).
        """
        names = data.schema.names
        absent = [c for c in self.columns if c not in names]
        if absent:
            raise missing_columns_error(absent, names)
        fast = self.fast
        return fast.transform_columns(
            data.num_rows,
            [self._numbers(data.column(name), name) for name in fast.numeric],
            [self._numbers(data.column(name), name) for name in fast.binary],
            [self._positions(data.column(name), j) for j, name in enumerate(fast.categorical)],
            clip=INPUT_CLIP,
        )

    def _numbers(self, column: pa.Array | pa.ChunkedArray, name: str) -> np.ndarray:
        """(n,) float64 copy, NaN for null, NaN and infinity."""
        if self.tokens is not None and _is_text(column.type):
            column = null_tokens(column, self.tokens)
        out = np.array(as_float64(column, name).to_numpy(zero_copy_only=False), dtype=np.float64)
        # An infinite value cannot be scaled; it is treated as missing (imputed and indicated).
        out[np.isinf(out)] = np.nan
        return out

    def _positions(self, column: pa.Array | pa.ChunkedArray, j: int) -> np.ndarray:
        """(n,) int64 one-hot position of each value of categorical column ``j`` (-1: none).

        The column is dictionary-encoded (a hash pass in Arrow), and only its distinct values
        are looked up and compared with the missing-value tokens.
        """
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        tokens = self.tokens if _is_text(column.type) else None
        if not pa.types.is_string(column.type):
            column = column.cast(pa.string())
        encoded = pc.dictionary_encode(column)
        levels = encoded.dictionary
        lookup = self.fast.level_lookup(j, levels.to_pylist())
        if tokens is not None and len(levels):
            is_token = pc.is_in(pc.utf8_trim_whitespace(levels), value_set=tokens)
            lookup[:-1][is_token.to_numpy(zero_copy_only=False)] = lookup[-1]
        codes = encoded.indices
        if codes.null_count:
            codes = codes.fill_null(-1)  # the last lookup entry: a missing value
        return lookup[codes.to_numpy(zero_copy_only=False)]


# Replays built per model: {detector: (its fast preprocessor, {(numeric, categorical, tokens):
# replay or None})}. Each replay wraps the detector's own :meth:`fast_preprocessor` (that cache
# is the one source): when the detector rebuilds it (a refit replaced ``preprocessor_``), the
# replays built on the old one are dropped. Weak keys, so a model swapped out of the online
# service or the batch cache is not held here.
_replays: weakref.WeakKeyDictionary[
    Any, tuple[FastPreprocessor, dict[tuple, ArrowReplay | None]]
] = weakref.WeakKeyDictionary()
_replays_lock = threading.Lock()


def replay_for(
    detector: Any,
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str] = (),
) -> ArrowReplay | None:
    """The :class:`ArrowReplay` of ``detector`` for these columns (built on first use, then
    reused while the detector keeps its preprocessor), or None when the model has no numpy
    replay or was fitted on other columns (the caller then scores through the frame)."""
    get_fast = getattr(detector, "fast_preprocessor", None)
    fast = get_fast() if get_fast is not None else None
    if fast is None:
        return None
    key = (tuple(numeric), tuple(categorical), tuple(missing_tokens))
    with _replays_lock:
        owner, built = _replays.get(detector, (None, None))
        if owner is not fast or built is None:
            built = {}
            _replays[detector] = (fast, built)
        if key not in built:
            built[key] = _build(fast, numeric, categorical, missing_tokens)
        return built[key]


def _build(
    fast: FastPreprocessor,
    numeric: Sequence[str],
    categorical: Sequence[str],
    tokens: Sequence[str],
) -> ArrowReplay | None:
    if sorted([*fast.numeric, *fast.binary]) != sorted(numeric) or sorted(
        fast.categorical
    ) != sorted(categorical):
        return None
    return ArrowReplay(fast, [*numeric, *categorical], tokens)


def preprocess_rows(
    data: pa.RecordBatch | pa.Table,
    detector: Any,
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str] = (),
) -> np.ndarray | None:
    """``data``'s (n, n_features) float32 preprocessed matrix, what :func:`score_rows` scores, or
    None when the model has no :class:`ArrowReplay` for these columns (it is then scored through
    a frame). Raises what :meth:`ArrowReplay.features` raises for a bad column."""
    replay = replay_for(detector, numeric, categorical, missing_tokens)
    return None if replay is None else replay.features(data)


def score_rows(
    data: pa.RecordBatch | pa.Table,
    detector: Any,
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str] = (),
    top_k: int = 3,
    features: np.ndarray | None = None,
) -> ScoreResult:
    """``data``'s n rows scored by ``detector``: scores, percentiles, flags, encoded features,
    top features and contributions (:class:`ScoreResult`, rows in ``data``'s order).

    ``features``: :func:`preprocess_rows` of ``data`` when the caller has it (batch scoring
    computes it in its reading thread); the result is the same bits either way.
    """
    if features is None:
        features = preprocess_rows(data, detector, numeric, categorical, missing_tokens)
    if features is None:
        frame = feature_frame(data, numeric, categorical, missing_tokens)
        return detector.score(frame, top_k=top_k)
    return detector.score_preprocessed(features, top_k=top_k)
