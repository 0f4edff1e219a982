"""Which batches a run works on: tonight's batches, and the accepted-batches training window.

A batch is *accepted* once it passed validation and was scored: its success marker
(``scored/<dataset>/_success/<batch_id>.json``) exists and records the batch's date
(:mod:`tasks.batch_dates`: its timestamp column, a date in its id, or its arrival).
Quarantined batches leave incoming/ and never get a marker, so they are never part of a window. The
retraining window is the accepted batches whose date falls in the last N days up to a given date;
optionally the challenger's training rows leave out those their scored output flags as anomalies, so
it learns normal behaviour only.

Plain functions do the work; the @task wrappers at the bottom only add Prefect settings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.batch_dates import batch_dates, date_in_id
from tasks.io import (
    StorageLayout,
    StorageOptions,
    checksum,
    fingerprint,
    list_batches,
    read_table,
    write_parquet_atomic,
)
from tasks.markers import read_marker


def parse_date(value: str, name: str = "date") -> dt.date:
    """An ISO date (YYYY-MM-DD), or the date a batch id starts with ('2026-01-08-part2')."""
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValueError(
            f"{name} must be a date YYYY-MM-DD (or a batch id starting with one), got {value!r}"
        ) from None


# --------------------------------------------------------------------------------- tonight
def records_input(marker: Mapping[str, Any], path: str, options: StorageOptions = None) -> bool:
    """Whether a success marker records the batch's current bytes: the file metadata fingerprint
    when it matches, otherwise the sha256 of the bytes (read only then)."""
    if marker.get("input_fingerprint") and marker["input_fingerprint"] == fingerprint(
        path, options
    ):
        return True
    return marker.get("input_sha256") == checksum(path, options)


def _dated(
    batches: Sequence[Mapping[str, Any]], dates: Mapping[str, str | None] | None
) -> list[tuple[dt.date | None, dict[str, Any]]]:
    """(date or None, batch) for each batch, by batch id: from ``dates`` (see
    :func:`tasks.batch_dates.batch_dates`), else the date written in the id."""
    dated = []
    for batch in sorted(batches, key=lambda b: b["batch_id"]):
        if dates is not None:
            found = dates.get(batch["batch_id"])
            day = dt.date.fromisoformat(found) if found else None
        else:
            day = date_in_id(batch["batch_id"])
        dated.append((day, dict(batch)))
    return dated


def select_nightly_batches(
    batches: Sequence[Mapping[str, Any]],
    layout: StorageLayout,
    date: str | None = None,
    options: StorageOptions = None,
    dates: Mapping[str, str | None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """What tonight's run scores, and what of the night was scored before.

    With ``date``, the night's batches are those dated that day: ``dates`` maps batch ids to their
    dates (:func:`tasks.batch_dates.batch_dates`: timestamp, id or arrival), or without it the date
    written in the id. A batch whose success marker records its current content (same bytes) was
    scored before, by any model, and is not scored again (re-scoring with another model is
    `aeflow backfill`). Without a date (a scheduled run), the night is every batch in incoming/ not
    scored yet, and nothing counts as scored before. A changed file under a scored name is scored
    again.

    Returns ``{"pending": [batch dicts], "scored_before": [success markers]}``, by batch id.
    """
    if date is not None:
        day = parse_date(date)
        batches = [b for d, b in _dated(batches, dates) if d == day]
    pending, scored_before = [], []
    for batch in sorted(batches, key=lambda b: b["batch_id"]):
        marker = read_marker(layout, batch["batch_id"], options)
        if marker is None or not records_input(marker, batch["path"], options):
            pending.append(dict(batch))
        elif date is not None:
            scored_before.append(marker)
    return {"pending": pending, "scored_before": scored_before}


def select_date_range(
    batches: Sequence[Mapping[str, Any]],
    start: str,
    end: str,
    dates: Mapping[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """The batches dated in [start, end] (inclusive), by batch id; ``dates`` as for
    :func:`select_nightly_batches` (without it, the date written in the id). Undated batches are
    never part of a range."""
    first, last = parse_date(start, "start"), parse_date(end, "end")
    if first > last:
        raise ValueError(f"the date range is empty: start {first} is after end {last}")
    return [b for day, b in _dated(batches, dates) if day is not None and first <= day <= last]


def date_window(
    batches: Sequence[Mapping[str, Any]],
    dates: Mapping[str, str | None],
    window_days: int,
    until: str | None = None,
) -> list[dict[str, Any]]:
    """The batches dated within the last ``window_days`` days up to ``until`` (inclusive; default:
    the newest batch date), by batch id. Undated batches are left out."""
    if window_days < 1:
        raise ValueError(f"window_days must be >= 1, got {window_days}")
    dated = [(day, b) for day, b in _dated(batches, dates) if day is not None]
    if not dated:
        return []
    last = parse_date(until, "until") if until else max(day for day, _ in dated)
    first = last - dt.timedelta(days=window_days - 1)
    return [b for day, b in dated if first <= day <= last]


# --------------------------------------------------------------------------- training window
def accepted_batches(layout: StorageLayout, options: StorageOptions = None) -> list[dict[str, Any]]:
    """Batches in incoming/ that passed validation and were scored, by batch id.

    Each is ``{"batch_id", "path", "date", "output", "model_version", "rows"}`` with ``date`` the
    batch's date (from the success marker) and ``output`` its scored file.
    """
    accepted = []
    for batch in list_batches(layout.incoming, options):
        marker = read_marker(layout, batch.batch_id, options)
        if marker is None or marker.get("status") != "scored" or marker.get("output") is None:
            continue
        accepted.append(
            {
                "batch_id": batch.batch_id,
                "path": batch.path,
                "date": marker["date"],
                "output": marker["output"],
                "model_version": marker["model_version"],
                "rows": int(marker["rows_out"]),
            }
        )
    return accepted


def training_window(
    accepted: Sequence[Mapping[str, Any]], window_days: int, until: str | None = None
) -> list[dict[str, Any]]:
    """The accepted batches dated within the last ``window_days`` days up to ``until`` (inclusive).

    ``until`` defaults to the newest accepted batch's date. Days without an accepted batch (none
    arrived, or it was quarantined) simply contribute nothing.
    """
    return date_window(accepted, {b["batch_id"]: b["date"] for b in accepted}, window_days, until)


def flagged_ids(
    window: Sequence[Mapping[str, Any]], id_column: str, options: StorageOptions = None
) -> pa.ChunkedArray:
    """The ids (as strings) of the rows the window's scored outputs flag as anomalies, each batch
    as flagged by the model that scored it."""
    parts = []
    for batch in window:
        scored = read_table(batch["output"], options, columns=[id_column, "is_anomaly"])
        flags = pc.fill_null(scored.column("is_anomaly"), False)
        parts.append(scored.column(id_column).filter(flags).cast(pa.string()))
    return pa.chunked_array(parts, type=pa.string())


def without_flagged_rows(
    train_path: str,
    window: Sequence[Mapping[str, Any]],
    id_column: str,
    destination: str,
    options: StorageOptions = None,
) -> dict[str, Any]:
    """Write the rows of ``train_path`` whose id was not flagged in the window's scored outputs to
    ``destination`` (atomic).

    Only the training rows are filtered, never the holdout: the promotion gate must compare the
    challenger and the champion on rows neither of them chose. Returns ``{"path", "rows_in",
    "rows_kept", "rows_left_out"}``.
    """
    table = read_table(train_path, options)
    if id_column not in table.schema.names:
        raise ValueError(
            f"the training rows in {train_path} lack the id column {id_column!r}, so flagged rows "
            "cannot be matched; set retrain.exclude_flagged = false"
        )
    flagged = pc.unique(flagged_ids(window, id_column, options).combine_chunks())
    is_flagged = pc.is_in(table.column(id_column).cast(pa.string()), value_set=flagged)
    kept = table.filter(pc.invert(pc.fill_null(is_flagged, False)))
    write_parquet_atomic(kept, destination, schema=table.schema, options=options)
    return {
        "path": destination,
        "rows_in": table.num_rows,
        "rows_kept": kept.num_rows,
        "rows_left_out": table.num_rows - kept.num_rows,
    }


# --------------------------------------------------------------------------- Prefect tasks
@task(name="select-nightly-batches", cache_policy=NO_CACHE)
def select_nightly_batches_task(
    batches: list[dict[str, Any]],
    root: str,
    dataset: str,
    date: str | None = None,
    options: StorageOptions = None,
    batch_date_source: str = "auto",
    timestamp_column: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    layout = StorageLayout(root, dataset)
    dates = None
    if date is not None:
        dates = batch_dates(batches, layout, batch_date_source, timestamp_column, options)
    return select_nightly_batches(batches, layout, date, options, dates)


@task(name="select-date-range", cache_policy=NO_CACHE)
def select_date_range_task(
    batches: list[dict[str, Any]],
    start: str,
    end: str,
    root: str,
    dataset: str,
    batch_date_source: str = "auto",
    timestamp_column: str | None = None,
    options: StorageOptions = None,
) -> list[dict[str, Any]]:
    dates = batch_dates(
        batches, StorageLayout(root, dataset), batch_date_source, timestamp_column, options
    )
    return select_date_range(batches, start, end, dates)


@task(name="training-window", cache_policy=NO_CACHE)
def training_window_task(
    root: str,
    dataset: str,
    window_days: int,
    until: str | None = None,
    options: StorageOptions = None,
) -> list[dict[str, Any]]:
    return training_window(
        accepted_batches(StorageLayout(root, dataset), options), window_days, until
    )


@task(name="leave-out-flagged-rows", cache_policy=NO_CACHE)
def without_flagged_rows_task(
    train_path: str,
    window: list[dict[str, Any]],
    id_column: str,
    destination: str,
    options: StorageOptions = None,
) -> dict[str, Any]:
    return without_flagged_rows(train_path, window, id_column, destination, options)
