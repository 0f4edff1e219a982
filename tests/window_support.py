"""Batches, scored outputs and training splits as the pipeline writes them, for the window, row
filter and feedback tests (real Parquet files under a temporary storage root)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.io import Storage, checksum, write_json_atomic
from tasks.records import TrainingSplit

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"]


def write_batch(layout: Storage, batch_id: str, n: int = 6, offset: int = 0) -> str:
    path = Path(layout.incoming_file(batch_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = [f"{batch_id}-{i + offset}" for i in range(n)]
    pq.write_table(pa.table({"id": ids, "amount": [float(i) for i in range(n)]}), path)
    return str(path)


def write_scored(layout: Storage, batch_id: str, path: str, flagged: list[bool]) -> str:
    """A scored output and its success marker, as the score task writes them."""
    source = pq.read_table(path)
    output = Path(layout.scored_file(batch_id, batch_id))
    output.parent.mkdir(parents=True, exist_ok=True)
    n = source.num_rows
    pq.write_table(
        pa.table(
            {
                "id": source.column("id"),
                "anomaly_score": pa.array([2.0 if f else 0.5 for f in flagged]),
                "is_anomaly": pa.array(flagged),
                "threshold": pa.array([1.0] * n),
                "model_version": pa.array(["v1"] * n),
                "batch_id": pa.array([batch_id] * n),
            }
        ),
        str(output),
    )
    write_json_atomic(
        {
            "batch_id": batch_id,
            "status": "scored",
            "rows_in": source.num_rows,
            "rows_out": source.num_rows,
            "flagged": sum(flagged),
            "input_path": path,
            "input_sha256": checksum(path),
            "model_version": "v1",
            "output": str(output),
            "date": batch_id,
        },
        layout.success_marker(batch_id),
    )
    return str(output)


def split_of(train: Path) -> TrainingSplit:
    """A training split whose training rows are ``train`` (no holdout needed here)."""
    return TrainingSplit(
        method="time",
        train_path=str(train),
        holdout_path=str(train.with_name("holdout.parquet")),
        train_rows=pq.read_metadata(train).num_rows,
        holdout_rows=0,
        holdout_fraction=0.2,
        seed=0,
        timestamp_column=None,
        label_column=None,
        label_note=None,
    )
