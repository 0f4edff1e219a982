"""Ingest: turn a CSV export into Parquet batches in incoming/.

Real exports rarely look like the contract: no header, ', ' separators, a comment line, labels with a
trailing '.', no row id, a date without its year. ``CsvFormat`` (the config's ``ingest`` section)
says how to read one; ``ingest_csv`` streams the file in chunks, gives every column its contract
type (numeric columns float64, the rest text, the timestamp UTC) and writes one Parquet file per
batch: the whole file, every N rows, or every day, week or month of the timestamp column. Batch ids
carry the batch's date (from the timestamp column, or a start date and a cadence for row splits),
so date-driven runs find them (tasks/batch_dates.py).

Ingest converts, it does not judge: a value that cannot be converted (text in a numeric column, a
date that does not exist) stops ingest with the row and the value, and nothing is written. Batches
are written to a hidden staging folder first and moved into incoming/ only when the whole file has
been read, so a failed ingest never leaves half a file to be scored.
"""

from __future__ import annotations

import calendar
import codecs
import csv
import datetime as dt
import itertools
import logging
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tasks.csv_text import (
    UTC_MICROS,
    IngestError,
    csv_records,
    text_to_float,
    text_to_timestamp,
    utf8_lines,
)
from tasks.ingest_staging import StagedBatches, remove_abandoned_staging
from tasks.io import Storage, StorageOptions, filesystem
from tasks.settings import ColumnsSettings

logger = logging.getLogger("aeflow.ingest")

MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
SPLITS = ("day", "week", "month")
CADENCES = ("daily", "weekly", "monthly")
CSV_EXTENSIONS = ("csv", "txt", "tsv", "dat")


@dataclass(frozen=True)
class CsvFormat:
    """How to read a CSV export (mirrors the config's ``ingest`` section).

    ``date_from_parts`` = (month column, day column, first year): build the timestamp from a month
    and a day when rows are in date order but carry no year; the year goes up whenever the month
    goes back (dec -> jan).
    """

    header: bool = True
    column_names: tuple[str, ...] = ()
    separator: str = ","
    comment_prefix: str | None = None
    strip_whitespace: bool = False
    drop_columns: tuple[str, ...] = ()
    replace: dict[str, dict[str, str]] = field(default_factory=dict)
    date_from_parts: tuple[str, str, int] | None = None
    decimal: str = "."
    thousands: str | None = None
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(
                f"unknown encoding {self.encoding!r}; use a Python codec name such as 'utf-8', "
                "'cp1252' or 'latin-1'"
            ) from None
        if len(self.separator) != 1:
            raise ValueError(f"separator must be one character, got {self.separator!r}")
        if len(self.decimal) != 1 or (self.thousands is not None and len(self.thousands) != 1):
            raise ValueError("the decimal and thousands separators are one character each")
        if self.decimal == self.thousands:
            raise ValueError(
                f"the decimal and thousands separators must differ, both {self.decimal!r}"
            )
        if not self.header and not self.column_names:
            raise ValueError("a CSV without a header needs column_names (the columns, in order)")


def safe_batch_prefix(name: str) -> str:
    """A batch-id prefix from a file name: letters, digits, '.', '-' and '_' only."""
    cleaned = re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("._-")
    if not cleaned:
        raise ValueError(f"cannot make a batch id from {name!r}; pass --name")
    return cleaned


def csv_stem(csv_path: str) -> str:
    """The file name without a CSV-like extension (adult.test keeps its '.test')."""
    base = posixpath.basename(str(csv_path).rstrip("/"))
    stem, dot, extension = base.rpartition(".")
    return stem if dot and extension.lower() in CSV_EXTENSIONS else base


# ------------------------------------------------------------------------------------ reading
# A header field without a name (a trailing separator) becomes this, then column <n>; its values
# must all be empty, and it is not carried into the batches.
UNNAMED = "\x00unnamed column "


def _header_names(line: bytes, fmt: CsvFormat) -> list[str]:
    names = next(csv.reader([line.decode("utf-8")], delimiter=fmt.separator))
    names = [n.strip() for n in names] if fmt.strip_whitespace else names
    return [n if n.strip() else f"{UNNAMED}{i}" for i, n in enumerate(names, 1)]


def _parse_chunk(lines: list[bytes], names: list[str], fmt: CsvFormat, first_row: int) -> pa.Table:
    """Parse raw lines into an all-text table; empty fields become null."""
    try:
        table = pacsv.read_csv(
            pa.py_buffer(b"".join(lines)),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(delimiter=fmt.separator, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise IngestError(
            f"CSV rows {first_row}-{first_row + len(lines) - 1} cannot be parsed with "
            f"{len(names)} columns separated by {fmt.separator!r}: {exc}"
        ) from None
    if fmt.strip_whitespace:
        table = pa.Table.from_arrays(
            [_blank_to_null(pc.utf8_trim_whitespace(c)) for c in table.columns], names=names
        )
    return table


def _blank_to_null(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def _replace_values(column: pa.ChunkedArray, mapping: dict[str, str]) -> pa.ChunkedArray:
    for old, new in mapping.items():
        column = pc.if_else(pc.equal(column, old), pa.scalar(new), column)
    return column


class _DateFromParts:
    """Builds timestamps from month/day columns, carrying the year across chunks."""

    def __init__(self, month_column: str, day_column: str, first_year: int) -> None:
        self.month_column, self.day_column = month_column, day_column
        self.year, self.last_month = first_year, None

    def __call__(self, table: pa.Table, first_row: int) -> pa.Array:
        months = table.column(self.month_column).to_pylist()
        days = table.column(self.day_column).to_pylist()
        stamps = []
        for offset, (month_text, day_text) in enumerate(zip(months, days, strict=True)):
            row = first_row + offset
            month = _month_number(month_text, row, self.month_column)
            if self.last_month is not None and month < self.last_month:
                self.year += 1
            self.last_month = month
            try:
                day = int(float(day_text))
                stamps.append(dt.datetime(self.year, month, day, tzinfo=dt.UTC))
            except (TypeError, ValueError):
                raise IngestError(
                    f"data row {row}: {self.year}-{month:02d}-{day_text} is not a date "
                    f"(columns {self.month_column!r}, {self.day_column!r})"
                ) from None
        return pa.array(stamps, type=UTC_MICROS)


def _month_number(value: Any, row: int, column: str) -> int:
    text = str(value).strip().lower() if value is not None else ""
    if text[:3] in MONTHS:
        return MONTHS[text[:3]]
    if text.isdigit() and 1 <= int(text) <= 12:
        return int(text)
    raise IngestError(
        f"data row {row}, column {column!r}: {value!r} is not a month (1-12 or jan-dec)"
    )


def read_csv_tables(
    csv_path: str,
    fmt: CsvFormat,
    columns: ColumnsSettings,
    *,
    id_prefix: str = "row",
    chunk_rows: int = 65_536,
    options: StorageOptions = None,
) -> Iterator[pa.Table]:
    """Stream a CSV as typed Arrow tables of at most ``chunk_rows`` rows.

    Columns: the id (``columns.id``) first (generated as ``<id_prefix>-<row number>`` when the CSV
    has none), the timestamp next when it is built from date parts, then the CSV's columns in
    order, minus ``fmt.drop_columns``. Numeric columns are float64 (``columns.missing_values``
    read as missing), the timestamp UTC, everything else text. The label column may be absent (a
    production export): with a header it is simply not there; without one, rows one field short
    of ``fmt.column_names`` are read without the label.
    """
    label_column = columns.label
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    fs, inner = filesystem(csv_path, options)
    if not fs.exists(inner):
        raise FileNotFoundError(f"CSV file {csv_path} does not exist")
    missing = pa.array(sorted(set(columns.missing_values)), type=pa.string())
    dates = _DateFromParts(*fmt.date_from_parts) if fmt.date_from_parts else None
    with fs.open(inner, "rb") as handle:
        text = utf8_lines(handle, fmt.encoding, posixpath.basename(str(csv_path)))
        lines = csv_records(text, fmt.separator, fmt.comment_prefix)
        absent: list[str] = []
        if fmt.header:
            first = next(lines, None)
            if first is None:
                raise IngestError(f"{csv_path} has no header line")
            names = _header_names(first, fmt)
        else:
            names = list(fmt.column_names)
            lines, names, absent = _without_absent_label(lines, names, fmt, label_column)
        _check_columns(names, fmt, columns, csv_path, [label_column, *absent])
        first_row = 1
        plan = _ChunkPlan(names, fmt, columns, missing, id_prefix, dates)

        def convert(chunk: list[bytes], first_row: int) -> pa.Table:
            return _convert(chunk, plan, first_row)

        chunk: list[bytes] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) == chunk_rows:
                yield convert(chunk, first_row)
                first_row += len(chunk)
                chunk = []
        if chunk:
            yield convert(chunk, first_row)


def _check_columns(
    names: list[str],
    fmt: CsvFormat,
    columns: ColumnsSettings,
    csv_path: str,
    optional: Sequence[str | None] = (),
) -> None:
    timestamp_column, numeric = columns.timestamp, columns.numeric
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise IngestError(f"{csv_path}: column name(s) {duplicated} appear more than once")
    # The label is optional (production exports lack it), and so are its rewrites.
    needed = [c for c in (*fmt.drop_columns, *fmt.replace) if c not in optional] + list(numeric)
    if fmt.date_from_parts:
        needed += list(fmt.date_from_parts[:2])
    elif timestamp_column is not None:
        needed.append(timestamp_column)
    absent = [n for n in dict.fromkeys(needed) if n not in names]
    if absent:
        raise IngestError(
            f"{csv_path}: column(s) {absent} named in the config are not in the CSV, which has "
            f"{names}; fix columns/ingest in the config (ingest.column_names for a headerless CSV)"
        )
    if fmt.date_from_parts and timestamp_column is None:
        raise IngestError("ingest.date_from_parts builds columns.timestamp: set columns.timestamp")
    if fmt.date_from_parts and timestamp_column in names:
        raise IngestError(
            f"the CSV already has a {timestamp_column!r} column; drop ingest.date_from_parts"
        )


def _without_absent_label(
    lines: Iterator[bytes],
    names: list[str],
    fmt: CsvFormat,
    label_column: str | None,
) -> tuple[Iterator[bytes], list[str], list[str]]:
    """For a headerless CSV exported without its label: ``(lines, names present, names absent)``.

    When the first data row has fewer fields than ``names``, the missing ones are taken to be the
    label, the label and the dropped columns (``fmt.drop_columns``), or the dropped columns, the
    first of these with the right count; otherwise nothing is absent (and parsing names the
    mismatch)."""
    first = next(lines, None)
    if first is None:
        return iter(()), names, []
    rest = itertools.chain([first], lines)
    fields = len(next(csv.reader([first.decode("utf-8")], delimiter=fmt.separator)))
    label = [label_column] if label_column in names else []
    dropped = [c for c in fmt.drop_columns if c in names and c != label_column]
    for absent in (label, [*label, *dropped], dropped):
        if absent and len(names) - fields == len(absent):
            return rest, [n for n in names if n not in absent], absent
    return rest, names, []


@dataclass(frozen=True)
class _ChunkPlan:
    """How every chunk of one CSV is converted: its column names, format, the column roles, the
    missing-value tokens, the prefix of generated row ids and the timestamp built from parts."""

    names: list[str]
    fmt: CsvFormat
    columns: ColumnsSettings
    missing: pa.Array
    id_prefix: str
    dates: _DateFromParts | None


def _convert(lines: list[bytes], plan: _ChunkPlan, first_row: int) -> pa.Table:
    names, fmt, missing, id_prefix, dates = (
        plan.names, plan.fmt, plan.missing, plan.id_prefix, plan.dates
    )  # fmt: skip
    id_column, timestamp_column = plan.columns.id, plan.columns.timestamp
    numeric = plan.columns.numeric
    raw = _parse_chunk(lines, names, fmt, first_row)
    arrays: dict[str, pa.ChunkedArray | pa.Array] = {}
    if id_column not in names:
        arrays[id_column] = pa.array(
            [f"{id_prefix}-{first_row + i:07d}" for i in range(raw.num_rows)], type=pa.string()
        )
    if dates is not None:
        arrays[timestamp_column] = dates(raw, first_row)
    for name in names:
        if name.startswith(UNNAMED) and raw.column(name).null_count < raw.num_rows:
            row = pc.index(pc.is_valid(raw.column(name)), True).as_py()
            raise IngestError(
                f"data row {first_row + row}: column {name.removeprefix(UNNAMED)} has no name "
                f"but a value, {raw.column(name)[row].as_py()!r}; name it in the CSV's header"
            )
        if name in fmt.drop_columns or name.startswith(UNNAMED):
            continue
        column = raw.column(name)
        if name in fmt.replace:
            column = _replace_values(column, fmt.replace[name])
        if name in numeric:
            column = text_to_float(
                column, name, missing, first_row, decimal=fmt.decimal, thousands=fmt.thousands
            )
        elif name == timestamp_column:
            column = text_to_timestamp(column, name, first_row)
        arrays[name] = column
    return pa.table(arrays)


# ------------------------------------------------------------------------------------- naming
def _add_months(day: dt.date, months: int) -> dt.date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def cadence_date(start: dt.date, cadence: str, step: int) -> dt.date:
    """The date of the ``step``-th batch (0-based) from ``start`` at ``cadence``."""
    if cadence == "daily":
        return start + dt.timedelta(days=step)
    if cadence == "weekly":
        return start + dt.timedelta(weeks=step)
    if cadence == "monthly":
        return _add_months(start, step)
    raise ValueError(f"cadence must be one of {list(CADENCES)}, got {cadence!r}")


def _period_keys(stamps: pa.ChunkedArray, split_by: str) -> np.ndarray:
    """(n,) text keys naming each row's period: YYYY-MM-DD (day; week: its Monday) or YYYY-MM."""
    if split_by == "week":
        stamps = pc.floor_temporal(stamps, unit="week", week_starts_monday=True)
    fmt = "%Y-%m" if split_by == "month" else "%Y-%m-%d"
    return pc.strftime(stamps, format=fmt).to_numpy(zero_copy_only=False)


def _write_by_period(
    staged: StagedBatches, prefix: str, table: pa.Table, column: str, split_by: str, first_row: int
) -> None:
    """``table`` (from data row ``first_row`` on) into one batch per period of ``column``."""
    stamps = table.column(column)
    if stamps.null_count:
        row = first_row + pc.index(pc.is_null(stamps), True).as_py()
        raise IngestError(
            f"data row {row} has no {column!r} (the first such row), so it "
            f"belongs to no {split_by}; fix the CSV, or cut it with --batch-rows N --start-date D"
        )
    keys = _period_keys(stamps, split_by)
    # Periods in order of first appearance: a chronological file fills each batch in turn.
    _, first = np.unique(keys, return_index=True)
    for key in keys[np.sort(first)]:
        staged.write(f"{prefix}-{key}", table.filter(pa.array(keys == key)))


@dataclass(frozen=True)
class Batching:
    """How :func:`ingest_csv` cuts a CSV into batches and names them (see there)."""

    batch_rows: int | None = None
    split_by: str | None = None
    name: str | None = None
    start_date: str | None = None
    cadence: str = "daily"


def ingest_csv(
    csv_path: str,
    *,
    storage: Storage,
    fmt: CsvFormat,
    columns: ColumnsSettings,
    batching: Batching = Batching(),
    chunk_rows: int = 65_536,
) -> list[dict[str, Any]]:
    """Convert a CSV into Parquet batches in ``storage.incoming``; returns [{"batch_id", "path", "rows"}].

    The columns get their roles and types from ``columns`` (see :func:`read_csv_tables`). Batch ids
    start with ``batching.name`` (default: the CSV's file name, cleaned) and carry the batch's
    date, so date-driven runs (nightly, backfill, the training windows) find them:

    - ``split_by`` "day" / "week" / "month": one batch per period of the timestamp column,
      ``<name>-YYYY-MM-DD`` (a week is named by its Monday) or ``<name>-YYYY-MM``;
    - ``batch_rows`` with ``start_date`` (YYYY-MM-DD): every N rows, dated ``start_date`` and then
      one ``cadence`` ("daily", "weekly", "monthly") apart: ``<name>-YYYY-MM-DD``;
    - ``start_date`` alone: the whole file, ``<name>-YYYY-MM-DD``;
    - ``batch_rows`` alone: ``<name>-0001``...; the whole file: ``<name>`` (no date in the id:
      such a batch is dated by its timestamp column, else its arrival).

    The label column may be absent from the CSV (see :func:`read_csv_tables`). Generated row ids
    are ``<file name>-<row number>`` whatever ``name`` is. A batch with the same id already in
    incoming/ is replaced.
    """
    batch_rows, split_by, name = batching.batch_rows, batching.split_by, batching.name
    start_date, cadence, timestamp_column = batching.start_date, batching.cadence, columns.timestamp
    if batch_rows is not None and split_by is not None:
        raise ValueError("give batch_rows or split_by, not both")
    if batch_rows is not None and batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    if split_by is not None and split_by not in SPLITS:
        raise ValueError(f"split_by must be one of {list(SPLITS)}, got {split_by!r}")
    if split_by is not None and timestamp_column is None:
        raise ValueError(
            f"split_by={split_by!r} needs columns.timestamp (or ingest.date_from_parts); "
            "without a date column, name batches with start_date and cadence"
        )
    if split_by is not None and start_date is not None:
        raise ValueError("split_by dates batches by the timestamp column; drop start_date")
    if cadence not in CADENCES:
        raise ValueError(f"cadence must be one of {list(CADENCES)}, got {cadence!r}")
    first_day = None
    if start_date is not None:
        try:
            first_day = dt.date.fromisoformat(start_date)
        except ValueError:
            raise ValueError(f"start_date must be a date YYYY-MM-DD, got {start_date!r}") from None
    prefix = safe_batch_prefix(name or csv_stem(csv_path))

    def part_id(part: int) -> str:
        if first_day is None:
            return f"{prefix}-{part:04d}"
        return f"{prefix}-{cadence_date(first_day, cadence, part - 1).isoformat()}"

    tables = read_csv_tables(
        csv_path,
        fmt,
        columns,
        # Row ids come from the file, not the batch names: two exports ingested under one --name
        # keep distinct ids (retraining matches flagged rows by id across a window).
        id_prefix=safe_batch_prefix(csv_stem(csv_path)),
        chunk_rows=min(chunk_rows, batch_rows or chunk_rows),
        options=storage.options,
    )
    whole = prefix if first_day is None else f"{prefix}-{first_day.isoformat()}"
    for url in remove_abandoned_staging(storage):
        logger.warning("removed %s, the staging folder of an ingest that was killed", url)
    staged = StagedBatches(storage)
    try:
        part, part_rows, first_row = 1, 0, 1
        for table in tables:
            if split_by is not None:
                _write_by_period(staged, prefix, table, timestamp_column, split_by, first_row)
                first_row += table.num_rows
            elif batch_rows is None:
                staged.write(whole, table)
            else:
                offset = 0
                while offset < table.num_rows:
                    take = min(batch_rows - part_rows, table.num_rows - offset)
                    staged.write(part_id(part), table.slice(offset, take))
                    offset, part_rows = offset + take, part_rows + take
                    if part_rows == batch_rows:
                        staged.close(part_id(part))
                        part, part_rows = part + 1, 0
        if not staged.rows:
            raise IngestError(f"{csv_path} holds no data rows")
        return staged.commit()
    except BaseException:
        staged.abort()
        raise
