"""Which batches a run works on: tonight's batches, and the accepted-batches training window.

A batch is *accepted* once it passed validation and was scored: its success marker
(``scored/<dataset>/_success/<batch_id>.json``) exists and records the batch's date
(:mod:`tasks.batch_dates`: its timestamp column, a date in its id, or its arrival).
Quarantined batches leave incoming/ and never get a marker, so they are never part of a window. The
retraining window is the accepted batches whose date falls in the last N days up to a given date
(which of its rows the challenger trains on: :mod:`tasks.row_filter`).

Plain functions do the work; tasks are the same functions with Prefect settings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.batch_dates import batch_dates, date_in_id
from tasks.incoming import BatchRef
from tasks.io import Storage, list_batches
from tasks.markers import read_marker, records_bytes_of
from tasks.records import SCORED, ScoreMarker
from tasks.settings import ColumnsSettings


class _HasBatchId(Protocol):
    @property
    def batch_id(self) -> str: ...


B = TypeVar("B", bound=_HasBatchId)


def parse_date(value: str, name: str = "date") -> dt.date:
    """An ISO date (YYYY-MM-DD), or the date a batch id starts with ('2026-01-08-part2')."""
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValueError(
            f"{name} must be a date YYYY-MM-DD (or a batch id starting with one), got {value!r}"
        ) from None


# --------------------------------------------------------------------------------- tonight
def _dated(
    batches: Sequence[B], dates: Mapping[str, str | None] | None
) -> list[tuple[dt.date | None, B]]:
    """(date or None, batch) for each batch, by batch id: from ``dates`` (see
    :func:`tasks.batch_dates.batch_dates`), else the date written in the id."""
    dated = []
    for batch in sorted(batches, key=lambda b: b.batch_id):
        if dates is not None:
            found = dates.get(batch.batch_id)
            day = dt.date.fromisoformat(found) if found else None
        else:
            day = date_in_id(batch.batch_id)
        dated.append((day, batch))
    return dated


@dataclass(frozen=True)
class NightlyBatches:
    """Tonight's batches to score, and the night's batches scored before (their markers)."""

    pending: list[BatchRef]
    scored_before: list[ScoreMarker]


def select_nightly_batches(
    batches: Sequence[BatchRef],
    *,
    storage: Storage,
    date: str | None = None,
    dates: Mapping[str, str | None] | None = None,
) -> NightlyBatches:
    """What tonight's run scores, and what of the night was scored before.

    With ``date``, the night's batches are those dated that day: ``dates`` maps batch ids to their
    dates (:func:`tasks.batch_dates.batch_dates`: timestamp, id or arrival), or without it the date
    written in the id. A batch whose success marker records its current content (same bytes) was
    scored before, by any model, and is not scored again (re-scoring with another model is
    `aeflow backfill`). Without a date (a scheduled run), the night is every batch in incoming/ not
    scored yet, and nothing counts as scored before. A changed file under a scored name is scored
    again. Both lists are by batch id.
    """
    if date is not None:
        day = parse_date(date)
        batches = [b for d, b in _dated(batches, dates) if d == day]
    pending, scored_before = [], []
    for batch in sorted(batches, key=lambda b: b.batch_id):
        marker = read_marker(storage, batch.batch_id)
        if marker is None or not records_bytes_of(marker, batch.path, storage.options):
            pending.append(batch)
        elif date is not None:
            scored_before.append(marker)
    return NightlyBatches(pending=pending, scored_before=scored_before)


def select_date_range(
    batches: Sequence[B], start: str, end: str, dates: Mapping[str, str | None] | None = None
) -> list[B]:
    """The batches dated in [start, end] (inclusive), by batch id; ``dates`` maps batch ids to
    their dates (without it, the date written in the id). Undated batches are never part of a
    range."""
    first, last = parse_date(start, "start"), parse_date(end, "end")
    if first > last:
        raise ValueError(f"the date range is empty: start {first} is after end {last}")
    return [b for day, b in _dated(batches, dates) if day is not None and first <= day <= last]


def date_window(
    batches: Sequence[B],
    dates: Mapping[str, str | None],
    window_days: int,
    until: str | None = None,
) -> list[B]:
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
def accepted_batches(storage: Storage, among: Collection[str] | None = None) -> list[ScoreMarker]:
    """Batches in incoming/ that passed validation and were scored, by batch id: their success
    markers, with ``input_path`` the batch's path in incoming/ now (``date`` is the batch's date,
    ``output`` its scored file). ``among``: only these batch ids (the other markers are not read).
    """
    accepted = []
    for batch in list_batches(storage.incoming, storage.options):
        if among is not None and batch.batch_id not in among:
            continue
        marker = read_marker(storage, batch.batch_id)
        if marker is None or marker.status != SCORED or marker.output is None:
            continue
        accepted.append(marker.replace(input_path=batch.path))
    return accepted


def training_window(
    accepted: Sequence[ScoreMarker], window_days: int, until: str | None = None
) -> list[ScoreMarker]:
    """The accepted batches dated within the last ``window_days`` days up to ``until`` (inclusive).

    ``until`` defaults to the newest accepted batch's date. Days without an accepted batch (none
    arrived, or it was quarantined) simply contribute nothing.
    """
    return date_window(accepted, {b.batch_id: b.date for b in accepted}, window_days, until)


def nothing_to_retrain_on(until: str | None, window_days: int) -> str:
    """Why a retraining has nothing to train on: no batch of its window was validated and scored."""
    if until:
        first = (parse_date(until, "until") - dt.timedelta(days=window_days - 1)).isoformat()
        span = f"dated {first}..{parse_date(until, 'until').isoformat()}"
    else:
        span = "yet"
    return (
        f"nothing to retrain on: no batch {span} has been validated and scored "
        f"(the {window_days}-day window); score batches first (`aeflow nightly` or "
        "`aeflow score`), then retrain"
    )


# --------------------------------------------------------------------------- Prefect tasks
@task(name="select-nightly-batches", cache_policy=NO_CACHE)
def select_nightly_batches_task(
    batches: list[BatchRef], *, storage: Storage, columns: ColumnsSettings, date: str | None = None
) -> NightlyBatches:
    """:func:`select_nightly_batches` with each batch's date from ``columns.batch_date``."""
    dates = None
    if date is not None:
        dates = batch_dates(batches, storage=storage, columns=columns)
    return select_nightly_batches(batches, storage=storage, date=date, dates=dates)


@task(name="select-date-range", cache_policy=NO_CACHE)
def select_date_range_task(
    batches: list[BatchRef], *, start: str, end: str, storage: Storage, columns: ColumnsSettings
) -> list[BatchRef]:
    """:func:`select_date_range` with each batch's date from ``columns.batch_date``."""
    dates = batch_dates(batches, storage=storage, columns=columns)
    return select_date_range(batches, start, end, dates)


@task(name="training-window", cache_policy=NO_CACHE)
def training_window_task(
    *, storage: Storage, window_days: int, until: str | None = None
) -> list[ScoreMarker]:
    """:func:`training_window` over the dataset's :func:`accepted_batches`."""
    return training_window(accepted_batches(storage), window_days, until)
