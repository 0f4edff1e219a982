"""Analysts' verdicts on scored rows: parsed, checked against the scored outputs, stored once.

A submission is one verdict ("confirmed": a real anomaly; "false_positive": a flag that was not one)
on a set of scored rows, each named by its batch id and row id (``columns.id``). It is stored as
``<root>/feedback/<dataset>/<submission_id>.parquet`` (:meth:`tasks.io.Storage.feedback_submission`),
written atomically, one row per verdict with what the scored output said about the row (model
version, score, flag, threshold, the batch's date), so precision can be measured later without
reading the scored files again.

Exactly once: the submission id is a hash of the content (dataset, verdict, note, analyst, the set
of rows) unless the caller names one; an identical submission finds its file and records nothing.
Latest wins: a row's current verdict is the one of the latest submission naming it
(:func:`latest_verdicts`). Bad input (an unknown batch or row id, a file without the id columns, an
unknown verdict) is a :class:`FeedbackError` naming the problem and the fix; nothing is written.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import posixpath
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.io import (
    Storage,
    exists,
    filesystem,
    read_table,
    write_parquet_atomic,
)
from tasks.markers import read_marker
from tasks.records import VERDICTS, FeedbackSubmission, VerdictSubmission
from tasks.settings import ColumnsSettings

PARQUET_MAGIC = b"PAR1"

BATCH_COLUMN = "batch_id"
ROW_COLUMN = "row_id"
# Unknown ids named in an error (the count says how many there are in all).
SHOWN_UNKNOWN = 5
_SUBMISSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

FEEDBACK_SCHEMA = pa.schema(
    [
        ("submission_id", pa.string()),
        ("submitted_at", pa.string()),  # ISO time, UTC
        (BATCH_COLUMN, pa.string()),
        (ROW_COLUMN, pa.string()),
        ("verdict", pa.string()),
        ("note", pa.string()),
        ("analyst", pa.string()),
        ("batch_date", pa.string()),  # YYYY-MM-DD: the batch's date (its scored partition)
        ("model_version", pa.string()),
        ("anomaly_score", pa.float64()),
        ("is_anomaly", pa.bool_()),
        ("threshold", pa.float64()),
    ]
)


class FeedbackError(ValueError):
    """Verdicts that cannot be recorded; the message names the problem and the fix."""


# ------------------------------------------------------------------------------------ input
def parse_id_rows(text: str, *, id_column: str, batch: str | None = None) -> list[list[str]]:
    """``[batch_id, row_id]`` pairs from CSV text (a file or stdin), duplicates removed, in order.

    Accepted: a header naming the row id column (``columns.id`` or ``row_id``) and ``batch_id``;
    a header with only the id column, or bare ids one per line, with ``batch`` (``--batch``); or
    headerless ``batch_id,row_id`` lines. Blank lines and lines starting with ``#`` are skipped;
    the separator may be a comma, a tab or a semicolon.
    """
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise FeedbackError(
            "no ids given: pass lines 'batch_id,row_id' (or a header naming batch_id and the row "
            f"id column {id_column!r}), or bare row ids with --batch BATCH_ID"
        )
    delimiter = next((d for d in (",", "\t", ";") if d in lines[0]), ",")
    records = [[cell.strip() for cell in row] for row in csv.reader(lines, delimiter=delimiter)]
    header = records[0]
    if id_column in header or ROW_COLUMN in header or BATCH_COLUMN in header:
        table = {
            name: [row[i] if i < len(row) else "" for row in records[1:]]
            for i, name in enumerate(header)
        }
        return _pairs_from_table(table, id_column=id_column, batch=batch, source="the ids file")
    pairs = []
    for number, row in enumerate(records, start=1):
        if len(row) == 1 and batch:
            pairs.append([batch, row[0]])
        elif len(row) == 2 and not batch:
            pairs.append([row[0], row[1]])
        else:
            raise FeedbackError(
                f"line {number} of the ids ({delimiter.join(row)!r}) is neither 'batch_id,row_id' "
                "nor a bare row id with --batch: give one pair per line, a header naming "
                f"batch_id and {id_column!r}, or bare ids and --batch BATCH_ID"
            )
    return _unique(pairs)


def parse_id_table(table: pa.Table, *, id_column: str, batch: str | None = None) -> list[list[str]]:
    """``[batch_id, row_id]`` pairs from a table (e.g. rows picked from a scored output, which
    carries ``batch_id`` and the id column)."""
    columns = {
        name: table.column(name).cast(pa.string()).to_pylist()
        for name in table.schema.names
        if name in (id_column, ROW_COLUMN, BATCH_COLUMN)
    }
    return _pairs_from_table(columns, id_column=id_column, batch=batch, source="the ids table")


def _pairs_from_table(
    columns: dict[str, list[Any]], *, id_column: str, batch: str | None, source: str
) -> list[list[str]]:
    row_name = id_column if id_column in columns else ROW_COLUMN if ROW_COLUMN in columns else None
    if row_name is None:
        raise FeedbackError(
            f"{source} has the columns {sorted(columns)} but no row id column: name it "
            f"{id_column!r} (columns.id) or {ROW_COLUMN!r}"
        )
    ids = columns[row_name]
    if BATCH_COLUMN in columns:
        batches = columns[BATCH_COLUMN]
        if batch and any(b != batch for b in batches):
            raise FeedbackError(
                f"{source} has a batch_id column whose values differ from --batch {batch!r}: "
                "give the batch ids in the file or with --batch, not both"
            )
    elif batch:
        batches = [batch] * len(ids)
    else:
        raise FeedbackError(
            f"{source} names no {BATCH_COLUMN!r} column: add one, or pass --batch BATCH_ID when "
            "every id is from one batch"
        )
    pairs = []
    for number, (batch_id, row_id) in enumerate(zip(batches, ids, strict=True), start=1):
        if not batch_id or row_id is None or row_id == "":
            raise FeedbackError(f"row {number} of {source} has an empty batch id or row id")
        pairs.append([str(batch_id), str(row_id)])
    if not pairs:
        raise FeedbackError(f"{source} holds no rows: nothing to record")
    return _unique(pairs)


def _unique(pairs: Iterable[list[str]]) -> list[list[str]]:
    return [list(pair) for pair in dict.fromkeys(tuple(p) for p in pairs)]


def read_id_rows(
    source: str, *, id_column: str, batch: str | None = None, stdin: Any = None
) -> list[list[str]]:
    """The ``[batch_id, row_id]`` pairs in ``source``: ``-`` (read ``stdin``), a Parquet file, or
    a CSV/text file (see :func:`parse_id_rows`)."""
    if source == "-":
        return parse_id_rows(stdin.read(), id_column=id_column, batch=batch)
    fs, path = filesystem(source)
    if not fs.exists(path):
        raise FeedbackError(f"ids file {source} does not exist; pass --ids FILE, or - for stdin")
    with fs.open(path, "rb") as handle:
        content = handle.read()
    # Parquet by its magic bytes (whatever the name), or by its name when it is damaged.
    if content[:4] == PARQUET_MAGIC or source.endswith(".parquet"):
        try:
            table = pq.read_table(pa.BufferReader(content))
        except (pa.ArrowInvalid, OSError) as exc:
            raise FeedbackError(
                f"ids file {source} cannot be read as Parquet ({exc}); write it again, or pass the "
                "ids as CSV"
            ) from None
        return parse_id_table(table, id_column=id_column, batch=batch)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FeedbackError(
            f"ids file {source} is neither UTF-8 text nor Parquet (byte {content[exc.start]:#04x} "
            f"at {exc.start}); save the ids as UTF-8 CSV, or as Parquet"
        ) from None
    return parse_id_rows(text, id_column=id_column, batch=batch)


# ---------------------------------------------------------------------------------- record
def submission_id_of(dataset: str, submission: VerdictSubmission) -> str:
    """The content hash naming a submission (same verdicts on the same rows, same id)."""
    content = {
        "dataset": dataset,
        "verdict": submission.verdict,
        "note": submission.note,
        "analyst": submission.analyst,
        "rows": sorted({tuple(pair) for pair in submission.rows}),
    }
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()
    return f"sub-{digest[:20]}"


def _check_submission(submission: VerdictSubmission) -> None:
    if submission.verdict not in VERDICTS:
        raise FeedbackError(
            f"unknown verdict {submission.verdict!r}: use 'confirmed' (a real anomaly) or "
            "'false_positive' (flagged, but normal)"
        )
    if not submission.rows:
        raise FeedbackError("no rows in the submission: name at least one batch_id,row_id")
    given = submission.submission_id
    if given is not None and not _SUBMISSION_ID.match(given):
        raise FeedbackError(
            f"submission id {given!r} must be 1-64 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit"
        )


def _scored_rows(
    storage: Storage, columns: ColumnsSettings, batch_id: str, row_ids: Sequence[str]
) -> pa.Table:
    """The scored output's rows ``row_ids`` of ``batch_id`` (ids as text), with the batch date."""
    marker = read_marker(storage, batch_id)
    if marker is None or marker.output is None or not exists(marker.output, storage.options):
        raise FeedbackError(
            f"batch {batch_id!r} has no scored output in {storage.scored}: verdicts are given "
            "on scored rows; check the batch id (a scored batch has "
            f"_success/<batch_id>.json there) or score the batch first"
        )
    wanted = [columns.id, "anomaly_score", "is_anomaly", "threshold", "model_version"]
    scored = read_table(marker.output, storage.options, columns=wanted)
    ids = scored.column(columns.id).cast(pa.string())
    scored = scored.set_column(scored.schema.get_field_index(columns.id), ROW_COLUMN, ids)
    found = scored.filter(pc.is_in(ids, value_set=pa.array(list(row_ids), pa.string())))
    known = set(found.column(ROW_COLUMN).to_pylist())
    unknown = [r for r in row_ids if r not in known]
    if unknown:
        shown = ", ".join(repr(r) for r in unknown[:SHOWN_UNKNOWN])
        more = f" and {len(unknown) - SHOWN_UNKNOWN} more" if len(unknown) > SHOWN_UNKNOWN else ""
        raise FeedbackError(
            f"{len(unknown)} id(s) are not rows of batch {batch_id!r}: {shown}{more}; each id "
            f"must be a value of the id column {columns.id!r} in its scored output "
            f"{marker.output}"
        )
    # One row per id (a duplicated id in the batch is matched once: the first scored row).
    first = pd.Series(found.column(ROW_COLUMN).to_pylist()).drop_duplicates().index.to_numpy()
    found = found.take(pa.array(first))
    return found.append_column("batch_date", pa.array([marker.date] * found.num_rows, pa.string()))


def record_feedback(
    submission: VerdictSubmission,
    *,
    storage: Storage,
    columns: ColumnsSettings,
    now: dt.datetime | None = None,
) -> FeedbackSubmission:
    """Check a submission against the scored outputs and store it once (module docstring).

    Raises :class:`FeedbackError` on an unknown verdict, batch or row id; nothing is written then.
    """
    _check_submission(submission)
    submission_id = submission.submission_id or submission_id_of(storage.dataset, submission)
    url = storage.feedback_submission(submission_id)
    if exists(url, storage.options):
        return _already_recorded(storage, url)
    by_batch: dict[str, list[str]] = {}
    for batch_id, row_id in _unique(submission.rows):
        by_batch.setdefault(batch_id, []).append(row_id)
    parts = []
    for batch_id, row_ids in sorted(by_batch.items()):
        part = _scored_rows(storage, columns, batch_id, row_ids)
        parts.append(part.append_column(BATCH_COLUMN, pa.array([batch_id] * part.num_rows)))
    scored = pa.concat_tables(parts)
    submitted_at = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="microseconds")
    n = scored.num_rows
    constant = {
        "submission_id": submission_id,
        "submitted_at": submitted_at,
        "verdict": submission.verdict,
        "note": submission.note,
        "analyst": submission.analyst,
    }
    table = pa.table(
        {
            field.name: (
                scored.column(field.name).cast(field.type)
                if field.name in scored.schema.names
                else pa.array([constant[field.name]] * n, field.type)
            )
            for field in FEEDBACK_SCHEMA
        },
        schema=FEEDBACK_SCHEMA,
    )
    write_parquet_atomic(table, url, schema=FEEDBACK_SCHEMA, options=storage.options)
    (summary,) = submissions(table.to_pandas())
    return FeedbackSubmission(dataset=storage.dataset, status="recorded", path=url, **summary)


def _already_recorded(storage: Storage, url: str) -> FeedbackSubmission:
    """The stored submission ``url``, and how many of its rows a later submission overrode."""
    stored = read_table(url, storage.options).to_pandas()
    (summary,) = submissions(stored)
    latest = latest_verdicts(storage)[[BATCH_COLUMN, ROW_COLUMN, "submission_id"]]
    merged = stored.merge(latest, on=[BATCH_COLUMN, ROW_COLUMN], suffixes=("", "_latest"))
    return FeedbackSubmission(
        dataset=storage.dataset,
        status="already_recorded",
        path=url,
        superseded_rows=int((merged["submission_id_latest"] != merged["submission_id"]).sum()),
        **summary,
    )


# ------------------------------------------------------------------------------------ read
def submission_files(storage: Storage) -> list[str]:
    """The stored submissions' URLs, by name (temporaries of interrupted writes are skipped)."""
    fs, folder = filesystem(storage.feedback, storage.options)
    if not fs.exists(folder):
        return []
    names = sorted(posixpath.basename(entry.rstrip("/")) for entry in fs.ls(folder, detail=False))
    return [
        storage.feedback_submission(name.removesuffix(".parquet"))
        for name in names
        if name.endswith(".parquet") and not name.startswith(".")
    ]


def all_verdicts(storage: Storage) -> pd.DataFrame:
    """Every stored verdict (one row per submission and row; columns of :data:`FEEDBACK_SCHEMA`),
    oldest submission first."""
    tables = [read_table(url, storage.options) for url in submission_files(storage)]
    if not tables:
        return FEEDBACK_SCHEMA.empty_table().to_pandas()
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return frame.sort_values(["submitted_at", "submission_id"], kind="stable").reset_index(
        drop=True
    )


def latest_verdicts(storage: Storage, verdicts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each reviewed row once, with its latest verdict (the latest submission naming it wins;
    equal times: the larger submission id)."""
    verdicts = all_verdicts(storage) if verdicts is None else verdicts
    latest = verdicts.drop_duplicates([BATCH_COLUMN, ROW_COLUMN], keep="last")
    return latest.sort_values([BATCH_COLUMN, ROW_COLUMN], kind="stable").reset_index(drop=True)


def submissions(verdicts: pd.DataFrame) -> list[dict[str, Any]]:
    """One summary per stored submission, oldest first: id, time, verdict, rows, flagged rows,
    batches, note, analyst."""
    listed = []
    for submission_id, rows in verdicts.groupby("submission_id", sort=False):
        first = rows.iloc[0]
        listed.append(
            {
                "submission_id": str(submission_id),
                "submitted_at": str(first["submitted_at"]),
                "verdict": str(first["verdict"]),
                "rows": len(rows),
                "flagged_rows": int(rows["is_anomaly"].fillna(False).astype(bool).sum()),
                "batches": sorted(str(b) for b in rows[BATCH_COLUMN].unique()),
                "note": None if pd.isna(first["note"]) else str(first["note"]),
                "analyst": None if pd.isna(first["analyst"]) else str(first["analyst"]),
            }
        )
    return listed


record_feedback_task = task(record_feedback, name="record-feedback", cache_policy=NO_CACHE)
