"""A batch's date: the day its rows belong to, whatever day it is scored.

The date decides a batch's ``date=`` partition and its success marker, and which batches a
date-driven run takes: tonight's batches (`aeflow nightly --date`), a backfill range, the training
and retraining windows. It comes from, in the order of ``columns.batch_date = "auto"``:

1. ``timestamp``: the UTC date of the batch's earliest value in ``columns.timestamp`` (Parquet
   statistics answer without reading data);
2. ``id``: a date written in the batch id (:data:`ID_DATE_PATTERNS`), e.g. ``2026-01-05``,
   ``export_20260105``, ``german-2026-01`` (the 1st of the month), ``sales-2026-W02`` (the Monday
   of the ISO week);
3. ``arrival``: the UTC date the batch's file was last modified (the newest part of a folder
   batch; LastModified on object stores). It is recorded under
   ``scored/<dataset>/_arrivals/<batch_id>.json`` the first time it is read, so re-running a night,
   copying the file or releasing it from quarantine never moves the batch to another day.

``"timestamp"``, ``"id"`` or ``"arrival"`` use that source only: a batch it cannot date has no date
(no date-driven run takes it, and scoring it is an error that says how to name or fix it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tasks.csv_text import iso_to_utc
from tasks.incoming import BatchRef
from tasks.io import (
    Storage,
    StorageOptions,
    batch_files,
    filesystem,
    iter_record_batches,
    open_parquet,
    read_json,
    read_schema,
    write_json_atomic,
)
from tasks.settings import ColumnsSettings

BATCH_DATE_SOURCES = ("auto", "timestamp", "id", "arrival")

# Dates found in batch ids, tried left to right in the id; at one position the most precise wins.
# A date must not touch other digits, so row counters such as `batch-123456789` are not dates.
_DAY = r"(?P<year>(?:19|20|21)\d\d)(?P<sep>[-_.]?)(?P<month>\d\d)(?P=sep)(?P<day>\d\d)"
_WEEK = r"(?P<wyear>(?:19|20|21)\d\d)-?W(?P<week>\d\d)"
_MONTH = r"(?P<myear>(?:19|20|21)\d\d)[-_](?P<mmonth>\d\d)"
_ID_DATE = re.compile(rf"(?<!\d)(?:{_DAY}|{_WEEK}|{_MONTH})(?![\dW])")
ID_DATE_PATTERNS = (
    "YYYY-MM-DD (also YYYY_MM_DD, YYYY.MM.DD, YYYYMMDD)",
    "YYYY-Www / YYYYWww (the Monday of ISO week ww)",
    "YYYY-MM / YYYY_MM (the 1st of the month)",
)


@dataclass(frozen=True)
class BatchDate:
    """A batch's date (ISO ``YYYY-MM-DD``, or None when its source cannot date it) and where it
    came from ("timestamp", "id", "arrival", or None)."""

    date: str | None
    source: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.date, "date_source": self.source}


def check_source(source: str) -> str:
    if source not in BATCH_DATE_SOURCES:
        raise ValueError(
            f"batch_date must be one of {list(BATCH_DATE_SOURCES)}, got {source!r}; 'auto' takes "
            "the timestamp column, else a date in the batch id, else the arrival"
        )
    return source


# ------------------------------------------------------------------------------------ sources
def date_in_id(batch_id: str) -> dt.date | None:
    """The first date written in a batch id (see :data:`ID_DATE_PATTERNS`), or None."""
    for match in _ID_DATE.finditer(str(batch_id)):
        parts = match.groupdict()
        try:
            if parts["year"]:
                return dt.date(int(parts["year"]), int(parts["month"]), int(parts["day"]))
            if parts["wyear"]:
                return dt.date.fromisocalendar(int(parts["wyear"]), int(parts["week"]), 1)
            return dt.date(int(parts["myear"]), int(parts["mmonth"]), 1)
        except ValueError:
            continue  # digits shaped like a date that is not one (2026-13-45): look further on
    return None


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


def earliest_timestamp_date(
    path: str, timestamp_column: str, options: StorageOptions = None
) -> dt.date | None:
    """The UTC date of the batch's earliest timestamp, or None when the column is absent, empty
    or not a date/time. Statistics first; without them the one column is scanned."""
    try:
        schema = read_schema(path, options)
        if timestamp_column not in schema.names:
            return None
        kind = schema.field(timestamp_column).type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return _earliest_iso_text_date(path, timestamp_column, options)
        earliest = _earliest_from_statistics(path, timestamp_column, options)
        if earliest is None:
            minima = [
                pc.min(rb.column(0)).as_py()
                for rb in iter_record_batches(path, options, columns=[timestamp_column])
            ]
            minima = [m for m in minima if m is not None]
            earliest = min(minima) if minima else None
    except (KeyError, IndexError, ValueError, OSError, TypeError):
        return None  # no such column, or a damaged file: validation quarantines it
    if isinstance(earliest, dt.datetime):
        if earliest.tzinfo is not None:
            earliest = earliest.astimezone(dt.UTC)
        return earliest.date()
    if isinstance(earliest, dt.date):
        return earliest
    return None


def _earliest_iso_text_date(path: str, column: str, options: StorageOptions) -> dt.date | None:
    """The UTC date of the earliest value of a timestamp column written as ISO-8601 text (an
    offset converted, none taken as UTC, as ingest reads it), or None when it holds other text
    or no value. Text sorts by its characters, not its instants, so every value is parsed."""
    earliest = None
    for record_batch in iter_record_batches(path, options, columns=[column]):
        try:
            stamps = iso_to_utc(record_batch.column(0))
        except pa.ArrowInvalid:
            return None
        found = pc.min(stamps).as_py()
        if found is not None and (earliest is None or found < earliest):
            earliest = found
    return earliest.date() if earliest is not None else None


def timestamp_dating_problem(column: pa.ChunkedArray | pa.Array, name: str) -> str | None:
    """Why a reference's timestamp column ``name`` cannot date batches (not a date/time, nor
    ISO-8601 text), or None when it can."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_null(kind):
        return None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            iso_to_utc(column.cast(pa.string()))
            return None
        except pa.ArrowInvalid:
            what = "text that is not ISO-8601"
    else:
        what = f"{kind}"
    return (
        f"columns.timestamp {name!r} is {what} in the reference, not a date/time: it cannot date "
        "batches, which are then dated by a date in their id, else their arrival (the day the "
        "file was written). Export it as a timestamp or ISO-8601 text (aeflow ingest converts "
        "ISO text), or leave columns.timestamp out"
    )


def modified_date(path: str, options: StorageOptions = None) -> dt.date:
    """The UTC date the batch was last written: the newest modification time of its files."""
    fs, _ = filesystem(path, options)
    stamps = []
    for file in batch_files(path, options):
        inner = filesystem(file, options)[1]
        fs.invalidate_cache(inner)
        stamp = fs.modified(inner)
        if stamp.tzinfo is None:
            # fsspec's local file system returns naive UTC times
            stamp = stamp.replace(tzinfo=dt.UTC)
        stamps.append(stamp.astimezone(dt.UTC))
    if not stamps:
        raise FileNotFoundError(f"batch {path} holds no Parquet files")
    return max(stamps).date()


def arrival_date(batch: BatchRef, storage: Storage) -> dt.date:
    """The batch's arrival date: the one recorded the first time it was asked for, else its
    modification date (recorded now)."""
    url, options = storage.arrival_record(batch.batch_id), storage.options
    recorded = read_json(url, options)
    if recorded and recorded.get("date"):
        return dt.date.fromisoformat(recorded["date"])
    arrived = modified_date(batch.path, options)
    write_json_atomic(
        {
            "batch_id": batch.batch_id,
            "date": arrived.isoformat(),
            "source": "file modification time",
            "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        url,
        options,
    )
    return arrived


# ------------------------------------------------------------------------------------ resolve
def resolve_batch_date(batch: BatchRef, *, storage: Storage, columns: ColumnsSettings) -> BatchDate:
    """The batch's date from ``columns.batch_date`` ("auto": timestamp, else id, else arrival)."""
    source, timestamp_column = columns.batch_date, columns.timestamp
    check_source(source)
    if source in ("auto", "timestamp") and timestamp_column:
        found = earliest_timestamp_date(batch.path, timestamp_column, storage.options)
        if found is not None:
            return BatchDate(found.isoformat(), "timestamp")
    if source in ("auto", "id"):
        found = date_in_id(batch.batch_id)
        if found is not None:
            return BatchDate(found.isoformat(), "id")
    if source in ("auto", "arrival"):
        try:
            return BatchDate(arrival_date(batch, storage).isoformat(), "arrival")
        except FileNotFoundError:
            pass  # an empty folder batch: validation quarantines it
    return BatchDate(None, None)


def undated_error(batch_id: str, source: str, timestamp_column: str | None) -> ValueError:
    """The error for a batch that ``source`` cannot date, with the fix."""
    if source == "timestamp":
        cause = f"no value in its timestamp column {timestamp_column!r}"
    elif source == "id":
        cause = f"no date in its id (patterns: {'; '.join(ID_DATE_PATTERNS)})"
    else:
        cause = "no readable file to take an arrival date from"
    return ValueError(
        f"batch {batch_id} has no date: columns.batch_date = {source!r} and the batch has {cause}; "
        "rename or fix the batch, or set columns.batch_date = 'auto' (timestamp, else a date in "
        "the id, else the arrival)"
    )


def batch_dates(
    batches: Sequence[BatchRef], *, storage: Storage, columns: ColumnsSettings
) -> dict[str, str | None]:
    """``{batch_id: YYYY-MM-DD or None}`` (see :func:`resolve_batch_date`)."""
    return {
        b.batch_id: resolve_batch_date(b, storage=storage, columns=columns).date for b in batches
    }
