"""A batch's date: its timestamp column, else a date in its id, else its arrival (recorded once)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.config import ConfigError, PipelineConfig
from tasks.batch_dates import (
    BatchDate,
    batch_dates,
    date_in_id,
    resolve_batch_date,
    undated_error,
)
from tasks.incoming import BatchRef
from tasks.io import Storage, read_json
from tasks.settings import ColumnsSettings


@pytest.mark.parametrize(
    ("batch_id", "expected"),
    [
        ("2026-01-05", "2026-01-05"),
        ("2026-01-05-late", "2026-01-05"),
        ("german-2026-01-05", "2026-01-05"),
        ("export_20260105", "2026-01-05"),
        ("export_2026_01_05", "2026-01-05"),
        ("dump.2026.01.05.part2", "2026-01-05"),
        ("20260105T0300Z", "2026-01-05"),
        ("german-2026-01", "2026-01-01"),
        ("sales-2026-W02", "2026-01-05"),  # the Monday of ISO week 2
        ("sales-2026W02", "2026-01-05"),
        ("v2-2026-13-45-then-2026-02-03", "2026-02-03"),  # not a date, then one
    ],
)
def test_dates_written_in_batch_ids(batch_id, expected):
    assert date_in_id(batch_id) == dt.date.fromisoformat(expected)


@pytest.mark.parametrize(
    "batch_id",
    ["german.data-0001", "batch-123456789", "row-0000001", "manual-upload", "2026", "x-3026-01-01"],
)
def test_ids_without_a_date(batch_id):
    assert date_in_id(batch_id) is None


def write(path: Path, stamps: list | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {"id": pa.array(["a", "b"]), "x": pa.array([1.0, 2.0])}
    if stamps is not None:
        columns["event_time"] = pa.array(stamps, type=pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table(columns), path)
    return str(path)


@pytest.fixture
def layout(tmp_path: Path) -> Storage:
    return Storage(str(tmp_path), "shop")


def date_of(
    batch_id: str, path: str, layout: Storage, source: str = "auto", timestamp: str | None = None
) -> BatchDate:
    """:func:`resolve_batch_date` of a batch with ``columns.batch_date = source``."""
    columns = ColumnsSettings(id="id", numeric=["x"], timestamp=timestamp, batch_date=source)
    return resolve_batch_date(BatchRef(batch_id, path, 0), storage=layout, columns=columns)


def set_mtime(path: str, day: str) -> None:
    stamp = dt.datetime.fromisoformat(day).replace(hour=12, tzinfo=dt.UTC).timestamp()
    os.utime(path, (stamp, stamp))


def test_auto_prefers_the_timestamp_then_the_id_then_the_arrival(layout, tmp_path):
    stamps = [dt.datetime(2026, 1, 3, 23, 30, tzinfo=dt.UTC), dt.datetime(2026, 1, 4, 1, 0)]
    timed = write(tmp_path / "in" / "2026-02-01.parquet", stamps)
    assert date_of("2026-02-01", timed, layout, "auto", "event_time") == BatchDate(
        "2026-01-03", "timestamp"
    )
    named = write(tmp_path / "in" / "export-2026-02-01.parquet")
    assert date_of("export-2026-02-01", named, layout, "auto", "event_time") == (
        BatchDate("2026-02-01", "id")
    )
    plain = write(tmp_path / "in" / "export.parquet")
    set_mtime(plain, "2026-03-09")
    assert date_of("export", plain, layout, "auto", None) == BatchDate("2026-03-09", "arrival")


def test_the_arrival_is_recorded_once_and_does_not_move(layout, tmp_path):
    path = write(tmp_path / "in" / "upload.parquet")
    set_mtime(path, "2026-03-09")
    first = date_of("upload", path, layout, "arrival")
    assert first == BatchDate("2026-03-09", "arrival")
    assert read_json(layout.arrival_record("upload"))["date"] == "2026-03-09"
    # re-delivered, copied back from quarantine, touched: the batch keeps the day it arrived
    write(tmp_path / "in" / "upload.parquet")
    set_mtime(path, "2026-04-20")
    assert date_of("upload", path, layout, "arrival") == first


def test_a_strict_source_leaves_a_batch_it_cannot_date_undated(layout, tmp_path):
    path = write(tmp_path / "in" / "upload.parquet", [None, None])
    assert date_of("upload", path, layout, "timestamp", "event_time").date is None
    assert date_of("upload", path, layout, "id", "event_time").date is None
    assert not Path(layout.arrival_record("upload")).exists()  # nothing recorded for them
    message = str(undated_error("upload", "id", None))
    assert "no date in its id" in message and "YYYY-MM-DD" in message
    assert "columns.batch_date = 'auto'" in message


def test_a_damaged_file_falls_through_to_the_id(layout, tmp_path):
    path = tmp_path / "in" / "2026-01-07.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 not really")
    assert date_of("2026-01-07", str(path), layout, "auto", "event_time") == BatchDate(
        "2026-01-07", "id"
    )


def test_batch_dates_maps_every_batch(layout, tmp_path):
    a = write(tmp_path / "in" / "a-2026-01-01.parquet")
    b = write(tmp_path / "in" / "b.parquet")
    dates = batch_dates(
        [BatchRef("a-2026-01-01", a, 0), BatchRef("b", b, 0)],
        storage=layout,
        columns=ColumnsSettings(id="id", numeric=["x"], batch_date="id"),
    )
    assert dates == {"a-2026-01-01": "2026-01-01", "b": None}


def config(**columns) -> dict:
    return {
        "dataset": "shop",
        "columns": {"id": "id", "numeric": ["x"], **columns},
        "validation": {"suite": "shop.json"},
    }


def test_the_config_says_where_dates_come_from():
    assert PipelineConfig(**config()).columns.batch_date == "auto"
    assert PipelineConfig(**config(batch_date="arrival")).columns.batch_date == "arrival"
    with pytest.raises(ValueError, match="batch_date = 'timestamp' needs columns.timestamp"):
        PipelineConfig(**config(batch_date="timestamp"))
    with pytest.raises(ValueError, match="batch_date"):
        PipelineConfig(**config(batch_date="filename"))
    assert issubclass(ConfigError, ValueError)


def test_a_timestamp_column_of_iso_text_dates_the_batch(layout, tmp_path):
    # Timestamps exported as ISO text (a common Parquet export) were ignored without a word and
    # every batch was dated by its arrival: today, whatever days its rows belong to.
    path = tmp_path / "in" / "export.parquet"
    path.parent.mkdir(parents=True)
    stamps = ["2026-01-04T01:00:00+02:00", "2026-01-05 10:00:00", None]
    pq.write_table(pa.table({"id": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "ts": stamps}), path)
    set_mtime(str(path), "2026-03-09")
    assert date_of("export", str(path), layout, "auto", "ts") == BatchDate(
        "2026-01-03", "timestamp"
    )
    assert date_of("export", str(path), layout, "timestamp", "ts") == (
        BatchDate("2026-01-03", "timestamp")
    )
    pq.write_table(pa.table({"id": ["a"], "x": [1.0], "ts": ["not a time"]}), path)
    assert date_of("export", str(path), layout, "timestamp", "ts") == BatchDate(None, None)
