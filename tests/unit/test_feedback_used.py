"""Verdicts at work: they change the next retraining window as docs/feedback.md says (confirmed
anomalies left out, false positives kept), measure the precision of flags over time, and fire the
`feedback` retraining trigger below the configured floor."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from window_support import split_of, write_batch, write_scored

from tasks.drift import retrain_triggers
from tasks.feedback import latest_verdicts, record_feedback
from tasks.flag_precision import feedback_lines, precision_check, precision_over_time
from tasks.io import Storage
from tasks.records import VerdictSubmission
from tasks.row_filter import RowFilter, filter_training_rows
from tasks.settings import ColumnsSettings, FeedbackSettings, RetrainingSettings
from tasks.window import accepted_batches, training_window

COLUMNS = ColumnsSettings(id="id", numeric=["amount"])
DAY1, DAY2 = "2026-01-01", "2026-01-02"
FLAGS = {DAY1: [False, True, False, True, False, True], DAY2: [True] + [False] * 5}


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    storage = Storage(str(tmp_path), "demo")
    for day, flags in FLAGS.items():
        write_scored(storage, day, write_batch(storage, day), flags)
    # DAY1-0 was not flagged but is an anomaly; DAY1-1 was flagged and is one;
    # DAY1-3 was flagged but is normal. DAY1-5 and DAY2-0 are flagged and not reviewed.
    for verdict, rows in (
        ("confirmed", [f"{DAY1}-0", f"{DAY1}-1"]),
        ("false_positive", [f"{DAY1}-3"]),
    ):
        record_feedback(
            VerdictSubmission(verdict=verdict, rows=[[DAY1, r] for r in rows]),
            storage=storage,
            columns=COLUMNS,
        )
    return storage


def training_rows(storage: Storage, tmp_path: Path) -> Path:
    """Every row of both days as a training split's rows (the split's holdout is elsewhere)."""
    rows = pa.concat_tables([pq.read_table(m.input_path) for m in accepted_batches(storage)])
    path = Path(storage.training_rows("run"))
    path.parent.mkdir(parents=True)
    pq.write_table(rows, path)
    return path


def kept_ids(storage: Storage, tmp_path: Path, **rules) -> tuple[list[str], object]:
    window = training_window(accepted_batches(storage), 7)
    result = filter_training_rows(
        split=split_of(training_rows(storage, tmp_path)),
        row_filter=RowFilter(window=window, **rules),
        columns=COLUMNS,
        run="run",
        storage=storage,
    )
    return pq.read_table(result.split.train_path).column("id").to_pylist(), result


def test_confirmed_anomalies_leave_the_window_and_false_positives_stay(storage, tmp_path):
    kept, result = kept_ids(storage, tmp_path, leave_out_flagged=True)
    left_out = {f"{DAY1}-0", f"{DAY1}-1", f"{DAY1}-5", f"{DAY2}-0"}
    assert set(kept) == {f"{d}-{i}" for d in FLAGS for i in range(6)} - left_out
    assert f"{DAY1}-3" in kept  # flagged, but an analyst said false positive
    assert (result.rows_before, result.rows_left_out) == (12, 4)
    assert (result.flagged_left_out, result.confirmed_left_out) == (2, 2)
    assert result.false_positives_kept == 1


def test_confirmed_anomalies_leave_even_when_flagged_rows_are_kept(storage, tmp_path):
    kept, result = kept_ids(storage, tmp_path, leave_out_flagged=False)
    assert f"{DAY1}-0" not in kept and f"{DAY1}-1" not in kept and len(kept) == 10
    assert (result.flagged_left_out, result.confirmed_left_out) == (0, 2)


def test_without_the_feedback_rules_only_the_flags_count(storage, tmp_path):
    kept, result = kept_ids(
        storage, tmp_path, leave_out_flagged=True, leave_out_confirmed=False,
        keep_false_positives=False,
    )  # fmt: skip
    assert f"{DAY1}-3" not in kept and f"{DAY1}-0" in kept
    assert (result.rows_left_out, result.flagged_left_out, result.confirmed_left_out) == (4, 4, 0)


def test_nothing_to_leave_out_keeps_the_split_as_it_is(tmp_path):
    storage = Storage(str(tmp_path), "demo")
    write_scored(storage, DAY1, write_batch(storage, DAY1), [True] * 6)
    window = training_window(accepted_batches(storage), 7)
    split = split_of(training_rows(storage, tmp_path))
    result = filter_training_rows(
        split=split,
        row_filter=RowFilter(window=window, leave_out_flagged=False),
        columns=COLUMNS,
        run="run",
        storage=storage,
    )
    assert result.split == split and result.rows_left_out == 0


def test_flag_precision_over_time_and_the_feedback_trigger(storage):
    latest = latest_verdicts(storage)
    (day,) = precision_over_time(latest)
    # reviewed flags: DAY1-1 (confirmed), DAY1-3 (false positive); DAY1-0 was missed
    assert day == {
        "date": DAY1, "reviewed": 2, "confirmed": 1, "false_positives": 1, "precision": 0.5,
        "missed": 1, "models": ["v1"],
    }  # fmt: skip
    feedback = FeedbackSettings(precision_floor=0.6, min_verdicts=2, precision_days=7)
    check = precision_check(latest, feedback=feedback, model_version="v1")
    assert check.below_floor and check.precision == 0.5
    assert (check.first_date, check.last_date) == ("2025-12-26", DAY1)
    assert "below the floor of 60%" in check.reason

    now = dt.datetime(2026, 1, 3, tzinfo=dt.UTC)
    retraining = RetrainingSettings(max_model_age_days=None)
    decision = retrain_triggers([], None, now, retraining, check)
    assert decision.retrain and decision.triggers == ["feedback"]
    assert decision.flag_precision["precision"] == 0.5

    # too few reviewed flags, another model's flags, a floor it clears: no trigger
    for settings, version in (
        (feedback.model_copy(update={"min_verdicts": 3}), "v1"),
        (feedback, "v2"),
        (feedback.model_copy(update={"precision_floor": 0.5}), "v1"),
    ):
        check = precision_check(latest, feedback=settings, model_version=version)
        assert not check.below_floor
        assert not retrain_triggers([], None, now, retraining, check).retrain


def test_the_nightly_summary_shows_the_precision_per_date(storage):
    from tasks.flag_precision import feedback_summary

    summary = feedback_summary(storage, feedback=FeedbackSettings(), model_version="v1")
    text = "\n".join(feedback_lines(summary))
    assert "| 2026-01-01 | 2 | 1 | 1 | 50.0% | 1 |" in text
    assert "no floor set" in text
    assert "No verdicts yet" in "\n".join(feedback_lines(None))
