"""Request and response bodies: JSON records, Arrow IPC streams and Parquet files.

A request names its body's form in ``Content-Type``; the response comes in the same form unless
``Accept`` names another of :data:`MEDIA_TYPES`.

- JSON (``application/json``): one row as an object, or many as a list of objects. The response
  is an object for an object and a list for a list. NaN, Infinity and -Infinity literals are read
  (as Python's json writes them) and mean a missing value, as in batch scoring.
- Arrow IPC (``application/vnd.apache.arrow.stream``, or the file format
  ``application/vnd.apache.arrow.file``): a table, answered as an Arrow stream.
- Parquet (``application/vnd.apache.parquet``, also ``application/x-parquet``): a file, answered as
  a Parquet file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from serving.rules import ColumnRule, InputError, InputProblem, table_from_records

JSON = "application/json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_FILE = "application/vnd.apache.arrow.file"
PARQUET = "application/vnd.apache.parquet"
MEDIA_TYPES = {
    JSON: "json",
    ARROW_STREAM: "arrow",
    ARROW_FILE: "arrow",
    PARQUET: "parquet",
    "application/x-parquet": "parquet",
}
RESPONSE_TYPES = {"json": JSON, "arrow": ARROW_STREAM, "parquet": PARQUET}


class BodyError(ValueError):
    """A body that cannot be read as its declared form; ``status`` is 400, or 415 for a form
    the service does not read."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Body:
    """A parsed request body: its rows as an Arrow ``table``, its ``form`` ("json", "arrow",
    "parquet"), for JSON whether it was a single object (``single``), the ``problems`` of
    columns left out of ``table`` (types mixed within a column) and the number of ``rows``."""

    table: pa.Table
    form: str
    single: bool = False
    problems: tuple[InputProblem, ...] = ()
    rows: int | None = None

    def __post_init__(self) -> None:
        if self.rows is None:
            object.__setattr__(self, "rows", self.table.num_rows)


def media_form(content_type: str | None) -> str:
    """ "json", "arrow" or "parquet" for a Content-Type header; BodyError (415) otherwise."""
    media = (content_type or JSON).split(";", 1)[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise BodyError(
            f"Content-Type {media!r} is not read here; send {', '.join(sorted(MEDIA_TYPES))}",
            status=415,
        )
    return MEDIA_TYPES[media]


def response_form(accept: str | None, request_form: str) -> str:
    """The form to answer in: the first of ``Accept``'s media types that is served, else the
    request's own form."""
    for part in (accept or "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in MEDIA_TYPES:
            return MEDIA_TYPES[media]
    return request_form


def parse_body(raw: bytes, form: str, rules: Sequence[ColumnRule], max_rows: int) -> Body:
    """Read ``raw`` as ``form`` into a :class:`Body`; BodyError for unreadable bytes,
    :class:`RowLimitError` for more than ``max_rows`` rows, InputError for a JSON body that is not
    rows."""
    if form == "json":
        document = _json_loads(raw)
        single = isinstance(document, dict)
        records = [document] if single else document
        if not isinstance(records, list):
            raise InputError(
                [
                    InputProblem(
                        None,
                        f"a JSON body is one row (an object) or a list of rows, got "
                        f"{type(document).__name__}",
                        'send {"column": value, ...} or [{"column": value, ...}, ...]',
                    )
                ]
            )
        check_row_limit(len(records), max_rows)
        table, problems = table_from_records(records, rules)
        return Body(table, "json", single, tuple(problems), len(records))
    try:
        if form == "arrow":
            table = _read_arrow(raw)
        else:
            parquet = pq.ParquetFile(pa.BufferReader(raw))
            check_row_limit(parquet.metadata.num_rows, max_rows)
            wanted = [r.name for r in rules if r.name in parquet.schema_arrow.names]
            table = parquet.read(columns=wanted)
    except (pa.ArrowInvalid, OSError) as error:
        name = "an Arrow IPC stream or file" if form == "arrow" else "a Parquet file"
        raise BodyError(
            f"the body is not {name}: {error}; send the bytes the writer made"
        ) from None
    check_row_limit(table.num_rows, max_rows)
    table, problems = _readable_columns(table, rules)
    return Body(table, form, problems=tuple(problems))


def _readable_columns(
    table: pa.Table, rules: Sequence[ColumnRule]
) -> tuple[pa.Table, list[InputProblem]]:
    """The columns ``rules`` name that the table holds once and can be read, and the problems of
    the others: a name held twice, text that is not UTF-8 (Arrow IPC does not check it)."""
    problems, kept = [], {}
    for rule in rules:
        count = table.column_names.count(rule.name)
        if count == 0:
            continue
        if count > 1:
            problems.append(
                InputProblem(
                    rule.name,
                    f"one column per name; the body has {count} columns named {rule.name!r}",
                    f"send {rule.name!r} once",
                )
            )
            continue
        column = table.column(rule.name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                problems.append(
                    InputProblem(
                        rule.name,
                        "text must be UTF-8; the column holds bytes that are not",
                        f"write {rule.name!r} as UTF-8 text (or decode it before sending)",
                    )
                )
                continue
        kept[rule.name] = column
    return pa.table(kept) if kept else pa.table({}), problems


def _json_loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    # Python's json reads NaN / Infinity, which clients built on it write for missing numbers.
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BodyError(f"the body is not valid JSON ({error}); send JSON records") from None
    except RecursionError:
        raise BodyError(
            "the JSON body is nested too deep to read (thousands of levels); send rows as a "
            "list of flat objects"
        ) from None


def _read_arrow(raw: bytes) -> pa.Table:
    if raw[:6] == b"ARROW1":
        return pa.ipc.open_file(pa.BufferReader(raw)).read_all()
    return pa.ipc.open_stream(pa.BufferReader(raw)).read_all()


class RowLimitError(ValueError):
    """A request with more rows than the service takes at once (HTTP 413)."""


def check_row_limit(n_rows: int, max_rows: int) -> None:
    if n_rows > max_rows:
        raise RowLimitError(
            f"the request has {n_rows:,} rows; this service takes at most {max_rows:,} rows per "
            "request (aeflow api --max-rows): split the rows into several requests"
        )


# ------------------------------------------------------------------------------------ responses
def encode_table(table: pa.Table, form: str, single: bool = False) -> bytes:
    """An output table -> response bytes in ``form`` (a JSON object for a ``single`` row)."""
    if form == "json":
        records = table_records(table)
        return orjson.dumps(records[0] if single and records else records)
    sink = io.BytesIO()
    if form == "arrow":
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        pq.write_table(table, sink)
    return sink.getvalue()


def table_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts of JSON-ready values: floats as their exact float64 (NaN as null), struct
    columns as objects, timestamps as ISO 8601 text."""
    names = table.column_names
    columns = [_json_values(table.column(name)) for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _json_values(column: pa.ChunkedArray) -> list[Any]:
    kind = column.type
    if pa.types.is_floating(kind) and column.null_count == 0:
        values = column.to_numpy().astype(np.float64)
        return [None if v != v else v for v in values.tolist()]
    if pa.types.is_struct(kind):
        fields = [kind.field(i).name for i in range(kind.num_fields)]
        combined = column.combine_chunks()
        parts = [_json_values(pa.chunked_array([combined.field(f)])) for f in fields]
        return [dict(zip(fields, row, strict=True)) for row in zip(*parts, strict=True)]
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return [None if v is None else v.isoformat() for v in column.to_pylist()]
    values = column.to_pylist()
    if pa.types.is_floating(kind):
        return [None if v is None or v != v else v for v in values]
    return values
