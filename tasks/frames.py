"""Turning raw Arrow data into the frames that validation and the model take.

Raw batches write "missing" in dataset-specific ways ('?', 'unknown', ''), so string columns have
those tokens turned into nulls first; validation then sees real nulls, and the model's imputers and
missing-indicators handle them.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def null_missing_tokens(
    data: pa.Table | pa.RecordBatch, tokens: Sequence[str]
) -> pa.Table | pa.RecordBatch:
    """Replace the given tokens by null in every string column (whitespace around values ignored)."""
    token_set = token_array(tokens)
    if token_set is None:
        return data
    arrays = []
    for column, field in zip(data.columns, data.schema, strict=True):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = null_tokens(column, token_set)
        arrays.append(column)
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(arrays, schema=data.schema)
    return pa.Table.from_arrays(arrays, schema=data.schema)


def token_array(tokens: Sequence[str]) -> pa.Array | None:
    """The missing-value tokens as the value set :func:`null_tokens` takes (None: no tokens)."""
    return pa.array(sorted(set(tokens)), type=pa.string()) if tokens else None


def null_tokens(column: pa.Array | pa.ChunkedArray, token_set: pa.Array) -> pa.Array:
    """A text column (string or large_string) with the values in ``token_set`` (whitespace
    around them ignored) as null; large_string comes back as string."""
    values = column.cast(pa.string()) if pa.types.is_large_string(column.type) else column
    is_token = pc.is_in(pc.utf8_trim_whitespace(values), value_set=token_set)
    return pc.if_else(is_token, pa.scalar(None, type=values.type), values)


def missing_columns_error(missing: Sequence[str], present: Sequence[str]) -> ValueError:
    return ValueError(
        f"batch lacks feature column(s) {list(missing)}; present: {list(present)}. "
        "Fix the batch or the config's columns section."
    )


def numeric_cast_error(name: str, column: pa.Array | pa.ChunkedArray) -> ValueError:
    sample = column.slice(0, 3).to_pylist()
    return ValueError(
        f"numeric column {name!r} cannot be read as numbers (type {column.type}, "
        f"first values {sample}); fix the data or list the column as categorical"
    )


def as_float64(column: pa.Array | pa.ChunkedArray, name: str) -> pa.Array | pa.ChunkedArray:
    """A numeric feature column as float64: integers and decimals rounded to the nearest float64
    (beyond 2**53 not every integer is one; pandas and numpy round the same way), text parsed;
    :func:`numeric_cast_error` when a value is not a number."""
    if pa.types.is_float64(column.type):
        return column
    # Arrow's safe cast refuses an integer a float64 cannot hold exactly; the model reads float32.
    exact = not (pa.types.is_integer(column.type) or pa.types.is_decimal(column.type))
    try:
        return column.cast(pa.float64(), safe=exact)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise numeric_cast_error(name, column) from exc


def feature_frame(
    data: pa.Table | pa.RecordBatch,
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str] = (),
) -> pd.DataFrame:
    """The model's input frame: numeric columns as float64, categorical columns as strings/None.

    Raises ValueError naming the column and sample values when a numeric column cannot be cast
    (validation should have quarantined such a batch before it gets here).
    """
    missing = [c for c in (*numeric, *categorical) if c not in data.schema.names]
    if missing:
        raise missing_columns_error(missing, data.schema.names)
    data = null_missing_tokens(data.select([*numeric, *categorical]), missing_tokens)
    frame: dict[str, object] = {}
    for name in numeric:
        values = as_float64(data.column(name), name)
        frame[name] = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    for name in categorical:
        column = data.column(name)
        if not pa.types.is_string(column.type):
            column = column.cast(pa.string())
        # Arrow -> pandas directly: with pandas 3 the column stays Arrow-backed (dtype str) instead
        # of becoming Python str objects that pandas converts back; same frame, ~15x faster.
        frame[name] = column.to_pandas()
    return pd.DataFrame(frame)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_native_memory() -> None:
    """Give freed memory back to the OS: Arrow's pool, and glibc's malloc heaps, where numpy and
    pandas buffers live. Each thread that worked on a batch has its own heap, and glibc keeps a
    heap's high-water mark until it is trimmed, so a long-running worker would otherwise hold
    the memory of its biggest batch on every thread that touched one."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
