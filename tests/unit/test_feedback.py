"""Analysts' verdicts (tasks.feedback, `aeflow feedback`): they round-trip through Parquet under
feedback/<dataset>/, an identical submission is stored once, the latest verdict of a row wins, and
bad input is one clear error naming the problem and the fix, with nothing written."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from window_support import write_batch, write_scored

from flows.commands import feedback as feedback_commands
from tasks.feedback import (
    FeedbackError,
    all_verdicts,
    latest_verdicts,
    parse_id_rows,
    read_id_rows,
    record_feedback,
    submission_files,
    submissions,
)
from tasks.io import Storage
from tasks.records import VerdictSubmission
from tasks.settings import ColumnsSettings

COLUMNS = ColumnsSettings(id="id", numeric=["amount"])
DAY1, DAY2 = "2026-01-01", "2026-01-02"
T0 = dt.datetime(2026, 1, 3, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    storage = Storage(str(tmp_path), "demo")
    write_scored(storage, DAY1, write_batch(storage, DAY1), [False, True, False, True, False, True])
    write_scored(storage, DAY2, write_batch(storage, DAY2), [True] + [False] * 5)
    return storage


def submit(storage: Storage, verdict: str, rows, *, minutes: int = 0, **extra):
    submission = VerdictSubmission(verdict=verdict, rows=[list(r) for r in rows], **extra)
    return record_feedback(
        submission, storage=storage, columns=COLUMNS, now=T0 + dt.timedelta(minutes=minutes)
    )


def test_verdicts_round_trip_with_what_the_scored_output_said(storage):
    recorded = submit(
        storage, "confirmed", [(DAY1, f"{DAY1}-1"), (DAY2, f"{DAY2}-0")], note="fraud ring",
        analyst="ana",
    )  # fmt: skip
    assert recorded.status == "recorded" and recorded.rows == 2 and recorded.flagged_rows == 2
    assert recorded.batches == [DAY1, DAY2]
    assert Path(recorded.path) == Path(storage.feedback, f"{recorded.submission_id}.parquet")
    stored = pq.read_table(recorded.path).to_pylist()
    assert [(r["batch_id"], r["row_id"]) for r in stored] == [
        (DAY1, f"{DAY1}-1"),
        (DAY2, f"{DAY2}-0"),
    ]
    first = stored[0]
    assert first["verdict"] == "confirmed" and first["note"] == "fraud ring"
    assert first["analyst"] == "ana" and first["model_version"] == "v1"
    assert first["is_anomaly"] is True and first["anomaly_score"] == 2.0
    assert first["batch_date"] == DAY1 and first["submitted_at"].startswith("2026-01-03T09:00")
    assert submission_files(storage) == [recorded.path]


def test_an_identical_submission_is_recorded_once(storage):
    rows = [(DAY1, f"{DAY1}-1"), (DAY1, f"{DAY1}-3")]
    first = submit(storage, "false_positive", rows)
    # the same verdicts again, later, ids in another order and one listed twice
    again = submit(storage, "false_positive", [rows[1], rows[0], rows[1]], minutes=5)
    assert again.status == "already_recorded"
    assert again.submission_id == first.submission_id
    assert again.submitted_at == first.submitted_at and again.rows == 2
    assert len(submission_files(storage)) == 1 and len(all_verdicts(storage)) == 2
    # another note is another submission
    other = submit(storage, "false_positive", rows, note="checked twice", minutes=6)
    assert other.status == "recorded" and other.submission_id != first.submission_id


def test_the_latest_verdict_of_a_row_wins(storage):
    row = (DAY1, f"{DAY1}-1")
    first = submit(storage, "confirmed", [row, (DAY1, f"{DAY1}-3")])
    submit(storage, "false_positive", [row], minutes=1)
    latest = latest_verdicts(storage)
    assert dict(zip(latest["row_id"], latest["verdict"], strict=True)) == {
        f"{DAY1}-1": "false_positive",
        f"{DAY1}-3": "confirmed",
    }
    # resubmitting the first submission records nothing, and says a row has a later verdict
    again = submit(storage, "confirmed", [row, (DAY1, f"{DAY1}-3")], minutes=2)
    assert again.status == "already_recorded" and again.superseded_rows == 1
    assert latest_verdicts(storage)["verdict"].tolist() == ["false_positive", "confirmed"]
    # a named submission makes it the latest again
    submit(storage, "confirmed", [row], minutes=3, submission_id="recheck-1")
    assert latest_verdicts(storage)["verdict"].tolist() == ["confirmed", "confirmed"]
    assert [s["submission_id"] for s in submissions(all_verdicts(storage))][0] == (
        first.submission_id
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(DAY1, "nope-1"), (DAY1, "nope-2")], r"2 id\(s\) are not rows of batch '2026-01-01': 'nope-1', 'nope-2'"),
        ([("2026-02-30", "x")], "batch '2026-02-30' has no scored output"),
        ([], "no rows in the submission"),
    ],
)  # fmt: skip
def test_unknown_rows_are_errors_and_nothing_is_written(storage, rows, message):
    with pytest.raises(FeedbackError, match=message):
        submit(storage, "confirmed", [(DAY1, f"{DAY1}-0"), *rows] if rows else [])
    assert submission_files(storage) == []


def test_an_unknown_verdict_names_the_two_verdicts(storage):
    with pytest.raises(FeedbackError, match="use 'confirmed' .* or 'false_positive'"):
        submit(storage, "maybe", [(DAY1, f"{DAY1}-0")])


def test_id_files_in_each_accepted_shape():
    header = "batch_id,id\n2026-01-01,a\n2026-01-01,b\n2026-01-01,a\n"
    assert parse_id_rows(header, id_column="id") == [[DAY1, "a"], [DAY1, "b"]]
    pairs = "# reviewed today\n2026-01-01;a\n\n2026-01-02;b\n"
    assert parse_id_rows(pairs, id_column="id") == [[DAY1, "a"], [DAY2, "b"]]
    assert parse_id_rows("a\nb\n", id_column="id", batch=DAY1) == [[DAY1, "a"], [DAY1, "b"]]
    assert parse_id_rows("row_id\na\n", id_column="id", batch=DAY2) == [[DAY2, "a"]]


@pytest.mark.parametrize(
    ("text", "batch", "message"),
    [
        ("batch_id,txn\n2026-01-01,a\n", None, r"no row id column: name it 'id' \(columns.id\)"),
        ("id\na\n", None, "names no 'batch_id' column: add one, or pass --batch"),
        ("a\nb\n", None, "line 1 of the ids .* nor a bare row id with --batch"),
        ("batch_id,id\n2026-01-02,a\n", DAY1, "give the batch ids in the file or with --batch"),
        ("# nothing\n", None, "no ids given"),
    ],
)
def test_malformed_id_files_say_what_to_change(text, batch, message):
    with pytest.raises(FeedbackError, match=message):
        parse_id_rows(text, id_column="id", batch=batch)


def test_ids_from_a_scored_parquet_slice(storage, tmp_path):
    scored = pq.read_table(storage.scored_file(DAY1, DAY1)).filter(
        pa.array([False, True, False, True, False, False])
    )
    pq.write_table(scored, tmp_path / "picked.parquet")
    pairs = read_id_rows(str(tmp_path / "picked.parquet"), id_column="id")
    assert pairs == [[DAY1, f"{DAY1}-1"], [DAY1, f"{DAY1}-3"]]
    # Parquet under another name is read as Parquet; bytes that are neither are named.
    (tmp_path / "picked.pq").write_bytes((tmp_path / "picked.parquet").read_bytes())
    assert read_id_rows(str(tmp_path / "picked.pq"), id_column="id") == pairs
    (tmp_path / "ids.csv").write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(FeedbackError, match=r"ids\.csv is neither UTF-8 text nor Parquet"):
        read_id_rows(str(tmp_path / "ids.csv"), id_column="id")
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "picked.parquet").read_bytes()[:100])
    with pytest.raises(FeedbackError, match=r"cut\.parquet cannot be read as Parquet"):
        read_id_rows(str(tmp_path / "cut.parquet"), id_column="id")


# -------------------------------------------------------------------------------------- CLI
def cli(*argv: str, stdin: str = "") -> int:
    root = argparse.ArgumentParser(prog="aeflow")
    feedback_commands.register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(list(argv))
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return args.handler(args)
    finally:
        sys.stdin = saved


@pytest.fixture
def config(storage: Storage, tmp_path: Path) -> str:
    path = tmp_path / "feedback.toml"
    path.write_text(
        f'dataset = "demo"\n[storage]\nroot = "{storage.root}"\n'
        '[columns]\nid = "id"\nnumeric = ["amount"]\n[validation]\nsuite = "suite.json"\n'
        "[feedback]\nprecision_floor = 0.5\nmin_verdicts = 2\n",
        encoding="utf-8",
    )
    return str(path)


def test_the_commands_add_list_and_summarise(config, capsys):
    ids = f"{DAY1}-1\n{DAY1}-3\n"
    assert cli("feedback", "add", "--config", config, "--ids", "-", "--batch", DAY1,
               "--verdict", "false_positive", "--analyst", "", stdin=ids) == 0  # fmt: skip
    assert "recorded 2 false_positive verdict(s) on 1 batch(es)" in capsys.readouterr().out
    assert cli("feedback", "add", "--config", config, "--ids", "-", "--batch", DAY1,
               "--verdict", "false_positive", "--analyst", "", stdin=ids) == 0  # fmt: skip
    assert "already recorded" in capsys.readouterr().out

    assert cli("feedback", "list", "--config", config, "--json") == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["rows"] == 2 and listed["analyst"] is None

    assert cli("feedback", "list", "--config", config, "--rows") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("batch_id,row_id,verdict") and len(lines) == 3

    assert cli("feedback", "summary", "--config", config, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["overall"]["reviewed"] == 2 and summary["overall"]["precision"] == 0.0
    assert summary["over_time"][0]["date"] == DAY1
