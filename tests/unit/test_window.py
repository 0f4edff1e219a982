"""Tonight's batches, date ranges and the accepted-batches training window (real Parquet files)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from window_support import DAYS, split_of, write_batch, write_scored

from tasks.io import Storage, list_batches
from tasks.row_filter import RowFilter, filter_training_rows, flagged_ids
from tasks.settings import ColumnsSettings
from tasks.window import (
    accepted_batches,
    select_date_range,
    select_nightly_batches,
    training_window,
)


@pytest.fixture
def layout(tmp_path: Path) -> Storage:
    return Storage(str(tmp_path), "demo")


def batches(layout: Storage) -> list:
    return list_batches(layout.incoming)


def test_tonight_is_the_dated_batches_not_yet_scored(layout):
    paths = {day: write_batch(layout, day) for day in DAYS[:3]}
    write_batch(layout, "2026-01-03-late")
    write_scored(layout, DAYS[2], paths[DAYS[2]], [False] * 6)

    night = select_nightly_batches(batches(layout), storage=layout, date="2026-01-03")
    assert [b.batch_id for b in night.pending] == ["2026-01-03-late"]
    assert [m.batch_id for m in night.scored_before] == ["2026-01-03"]

    # a scheduled run (no date): every batch not scored yet, and the history is not its business
    everything = select_nightly_batches(batches(layout), storage=layout)
    assert [b.batch_id for b in everything.pending] == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03-late",
    ]
    assert everything.scored_before == []


def test_a_changed_file_under_a_scored_name_is_scored_again(layout):
    path = write_batch(layout, DAYS[0])
    write_scored(layout, DAYS[0], path, [False] * 6)
    write_batch(layout, DAYS[0], offset=100)  # re-delivered with other rows
    night = select_nightly_batches(batches(layout), storage=layout, date=DAYS[0])
    assert [b.batch_id for b in night.pending] == [DAYS[0]]
    assert night.scored_before == []


def test_a_bad_date_is_one_clear_error(layout):
    with pytest.raises(ValueError, match="date must be a date YYYY-MM-DD"):
        select_nightly_batches([], storage=layout, date="yesterday")


def test_date_ranges_are_inclusive_and_skip_undated_batches(layout):
    for day in DAYS:
        write_batch(layout, day)
    write_batch(layout, "manual-upload")
    chosen = select_date_range(batches(layout), "2026-01-02", "2026-01-04")
    assert [b.batch_id for b in chosen] == DAYS[1:4]
    with pytest.raises(ValueError, match="start 2026-01-04 is after end 2026-01-02"):
        select_date_range(batches(layout), "2026-01-04", "2026-01-02")


def test_the_window_holds_the_accepted_batches_of_the_last_n_days(layout):
    paths = {day: write_batch(layout, day) for day in DAYS}
    for day in DAYS:
        if day != "2026-01-04":  # validated and quarantined elsewhere: never scored
            write_scored(layout, day, paths[day], [False] * 6)
    accepted = accepted_batches(layout)
    assert [b.batch_id for b in accepted] == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
        "2026-01-05",
    ]
    assert accepted[0].rows_out == 6 and accepted[0].model_version == "v1"

    assert [b.batch_id for b in training_window(accepted, 3)] == ["2026-01-03", "2026-01-05"]
    assert [b.batch_id for b in training_window(accepted, 2, until="2026-01-02")] == [
        "2026-01-01",
        "2026-01-02",
    ]
    assert training_window([], 3) == []
    with pytest.raises(ValueError, match="window_days must be >= 1"):
        training_window(accepted, 0)


def test_rows_flagged_in_the_scored_outputs_are_left_out_of_the_training_rows(layout):
    flags = {
        DAYS[0]: [False, True, False, False, True, False],
        DAYS[1]: [False, False, False, False, False, True],
    }
    for day, flagged in flags.items():
        write_scored(layout, day, write_batch(layout, day), flagged)
    window = training_window(accepted_batches(layout), 7)
    assert sorted(flagged_ids(window, "id", layout).to_pylist()) == [
        f"{DAYS[0]}-1",
        f"{DAYS[0]}-4",
        f"{DAYS[1]}-5",
    ]
    # a training split: rows of both days, reordered (as a time-ordered split would)
    rows = pa.concat_tables([pq.read_table(b.input_path) for b in window])
    rows = rows.take([11, 0, 4, 7, 1, 5])
    train = Path(layout.training_rows("split"))
    train.parent.mkdir(parents=True)
    pq.write_table(rows, train)
    columns = ColumnsSettings(id="id", numeric=["amount"])

    result = filter_training_rows(
        split=split_of(train),
        row_filter=RowFilter(window=window, leave_out_flagged=True),
        columns=columns,
        run="split",
        storage=layout,
    )
    destination = layout.filtered_training_rows("split")
    assert Path(destination).parent == train.parent  # beside the training rows it replaces
    assert (result.rows_before, result.rows_left_out, result.flagged_left_out) == (6, 3, 3)
    assert (result.split.train_path, result.split.train_rows) == (destination, 3)
    assert not train.exists()  # the unfiltered training rows are not kept
    assert pq.read_table(destination).column("id").to_pylist() == [
        f"{DAYS[0]}-0",
        f"{DAYS[1]}-1",
        f"{DAYS[0]}-5",
    ]


def test_training_rows_without_the_id_column_cannot_be_matched(layout):
    path = write_batch(layout, DAYS[0])
    write_scored(layout, DAYS[0], path, [True] * 6)
    train = Path(layout.root, "train.parquet")
    pq.write_table(pq.read_table(path).drop_columns(["id"]), train)
    window = training_window(accepted_batches(layout), 1)
    with pytest.raises(ValueError, match="lack the id column 'id'"):
        filter_training_rows(
            split=split_of(train),
            row_filter=RowFilter(window=window, leave_out_flagged=True),
            columns=ColumnsSettings(id="id", numeric=["amount"]),
            run="split",
            storage=layout,
        )


def test_nights_and_ranges_follow_the_batch_dates_not_the_ids(layout):
    """A batch dated by its timestamp or arrival belongs to that day, whatever its id says."""
    for batch_id in ("export-a", "export-b", "2026-01-09"):
        write_batch(layout, batch_id)
    dates = {"export-a": "2026-01-03", "export-b": "2026-01-04", "2026-01-09": "2026-01-02"}
    night = select_nightly_batches(batches(layout), storage=layout, date="2026-01-03", dates=dates)
    assert [b.batch_id for b in night.pending] == ["export-a"]
    # the id says 2026-01-09, its rows say 2026-01-02: the rows win
    assert (
        select_nightly_batches(
            batches(layout), storage=layout, date="2026-01-09", dates=dates
        ).pending
        == []
    )
    chosen = select_date_range(batches(layout), "2026-01-02", "2026-01-03", dates)
    assert [b.batch_id for b in chosen] == ["2026-01-09", "export-a"]


def test_the_training_window_counts_days_of_batch_dates(layout):
    from tasks.training import select_training_batches

    for day in DAYS:
        write_batch(layout, f"shop-{day}")
    write_batch(layout, "undated")
    dates = {f"shop-{d}": d for d in DAYS} | {"undated": None}
    chosen = select_training_batches(batches(layout), 3, "2026-01-04", dates=dates)
    assert [b.batch_id for b in chosen] == [f"shop-{d}" for d in DAYS[1:4]]
    newest = select_training_batches(batches(layout), 2, dates=dates)
    assert [b.batch_id for b in newest] == [f"shop-{d}" for d in DAYS[3:]]
    # without dates, the date written in each id
    assert [b.batch_id for b in select_training_batches(batches(layout), 1)] == [f"shop-{DAYS[-1]}"]
