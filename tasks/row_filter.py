"""Which rows of a retraining window the challenger trains on: flags and analysts' verdicts.

An autoencoder should learn normal behaviour. The retrain flow therefore leaves out of the
challenger's *training* rows:

- the rows the champion flagged in their scored output (``retrain.exclude_flagged``), except
- the rows analysts marked ``false_positive`` (``feedback.keep_false_positives``): they are normal
  rows the champion got wrong, exactly what the challenger must learn; and always
- the rows analysts ``confirmed`` as anomalies (``feedback.exclude_confirmed``), flagged or not
  (an analyst may find an anomaly the model missed).

Each row's latest verdict counts (:func:`tasks.feedback.latest_verdicts`), from verdicts on the
window's batches. Rows are matched by their id (``columns.id``, unique per dataset). Only the
training rows are filtered, never the holdout: the promotion gate compares the challenger and the
champion on rows neither of them chose. docs/feedback.md describes it for users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.feedback import BATCH_COLUMN, ROW_COLUMN, latest_verdicts
from tasks.io import Storage, read_table, write_parquet_atomic
from tasks.records import CONFIRMED, FALSE_POSITIVE, ScoreMarker, TrainingSplit
from tasks.settings import ColumnsSettings


def flagged_ids(window: Sequence[ScoreMarker], id_column: str, storage: Storage) -> pa.ChunkedArray:
    """The ids (as strings) of the rows the window's scored outputs flag as anomalies, each batch
    as flagged by the model that scored it."""
    parts = []
    for batch in window:
        scored = read_table(batch.output, storage.options, columns=[id_column, "is_anomaly"])
        flags = pc.fill_null(scored.column("is_anomaly"), False)
        parts.append(scored.column(id_column).filter(flags).cast(pa.string()))
    return pa.chunked_array(parts, type=pa.string())


@dataclass(frozen=True)
class RowFilter:
    """What a retraining leaves out of its window's training rows (module docstring):
    ``window`` the scored batches, ``leave_out_flagged`` the champion's flags,
    ``leave_out_confirmed`` confirmed anomalies, ``keep_false_positives`` flagged rows marked
    false positive."""

    window: list[ScoreMarker]
    leave_out_flagged: bool
    leave_out_confirmed: bool = True
    keep_false_positives: bool = True


@dataclass(frozen=True)
class RowsLeftOut:
    """A training split after :func:`filter_training_rows`: ``rows_left_out`` =
    ``flagged_left_out`` + ``confirmed_left_out``; ``false_positives_kept`` flagged rows stayed
    because analysts marked them false positives."""

    split: TrainingSplit
    rows_before: int
    rows_left_out: int
    flagged_left_out: int = 0
    confirmed_left_out: int = 0
    false_positives_kept: int = 0


def _verdict_ids(storage: Storage, window: Sequence[ScoreMarker]) -> dict[str, pa.Array]:
    """{verdict: ids (strings)} of the latest verdicts on rows of the window's batches."""
    latest = latest_verdicts(storage)
    batches = {b.batch_id for b in window}
    latest = latest[latest[BATCH_COLUMN].isin(batches)]
    return {
        verdict: pa.array(
            list(latest.loc[latest["verdict"] == verdict, ROW_COLUMN].unique()), pa.string()
        )
        for verdict in (CONFIRMED, FALSE_POSITIVE)
    }


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)


def filter_training_rows(
    *,
    split: TrainingSplit,
    row_filter: RowFilter,
    columns: ColumnsSettings,
    run: str,
    storage: Storage,
) -> RowsLeftOut:
    """The split with the training rows ``row_filter`` leaves out removed (written atomically in
    run ``run``'s report folder beside them, :meth:`tasks.io.Storage.filtered_training_rows`; the
    unfiltered training rows are removed). The split is returned as it is when
    nothing can be left out (no flag filter and no verdict on the window)."""
    id_column, options = columns.id, storage.options
    verdicts = _verdict_ids(storage, row_filter.window)
    confirmed = verdicts[CONFIRMED] if row_filter.leave_out_confirmed else pa.array([], pa.string())
    kept_fp = verdicts[FALSE_POSITIVE] if row_filter.keep_false_positives else None
    if not row_filter.leave_out_flagged and len(confirmed) == 0:
        return RowsLeftOut(split=split, rows_before=split.train_rows, rows_left_out=0)
    table = read_table(split.train_path, options)
    if id_column not in table.schema.names:
        raise ValueError(
            f"the training rows in {split.train_path} lack the id column {id_column!r}, so flagged "
            "rows and analysts' verdicts cannot be matched; set retrain.exclude_flagged = false "
            "and feedback.exclude_confirmed = false"
        )
    ids = table.column(id_column).cast(pa.string()).combine_chunks()
    is_confirmed = pc.fill_null(pc.is_in(ids, value_set=confirmed), False)
    nothing = pa.array(np.zeros(table.num_rows, dtype=bool))
    is_flagged = nothing
    if row_filter.leave_out_flagged:
        flagged = pc.unique(flagged_ids(row_filter.window, id_column, storage).combine_chunks())
        is_flagged = pc.fill_null(pc.is_in(ids, value_set=flagged), False)
    is_kept_fp = nothing
    if kept_fp is not None and len(kept_fp):
        is_kept_fp = pc.and_(is_flagged, pc.fill_null(pc.is_in(ids, value_set=kept_fp), False))
    flagged_out = pc.and_(pc.and_not(is_flagged, is_kept_fp), pc.invert(is_confirmed))
    left_out = pc.or_(flagged_out, is_confirmed)
    kept = table.filter(pc.invert(left_out))
    destination = storage.filtered_training_rows(run)
    write_parquet_atomic(kept, destination, schema=table.schema, options=options)
    storage.remove(split.train_path)
    return RowsLeftOut(
        split=split.replace(train_path=destination, train_rows=kept.num_rows),
        rows_before=table.num_rows,
        rows_left_out=table.num_rows - kept.num_rows,
        flagged_left_out=_count(flagged_out),
        confirmed_left_out=_count(is_confirmed),
        false_positives_kept=_count(pc.and_(is_kept_fp, pc.invert(is_confirmed))),
    )


filter_training_rows_task = task(
    filter_training_rows, name="filter-training-rows", cache_policy=NO_CACHE
)
