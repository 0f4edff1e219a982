"""The scored file's stages: prepare (reading thread), score (scoring threads), assemble (writer)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from model_support import fit_tiny_detector

from tasks.demo_data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, generate_demo_data
from tasks.io import read_table
from tasks.scored_output import (
    ChunkScoring,
    chunk_output,
    output_schema,
    prepare_chunk,
    prepare_chunks,
    score_chunk,
    score_prepared,
    score_record_batches,
)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scored")
    manifest = generate_demo_data(
        folder, days=2, rows_per_day=600, seed=7, drift_day=None, malformed_day=None
    )
    tables = [read_table(str(folder / f"{b}.parquet")) for b in manifest.batch_ids]
    detector = fit_tiny_detector(tables[0])
    chunk = ChunkScoring(
        model_version="v1",
        batch_id="b1",
        passthrough=("transaction_id",),
        numeric=tuple(NUMERIC_COLUMNS),
        categorical=tuple(CATEGORICAL_COLUMNS),
        scored_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    )
    schema = output_schema(tables[1].schema, chunk.passthrough, int(detector.latent_dim_))
    return detector, tables[1].to_batches(max_chunksize=256), chunk, schema


def test_the_three_stages_give_score_chunks_output(fitted):
    detector, batches, chunk, schema = fitted
    record_batch = batches[0]
    prepared = prepare_chunk(record_batch, detector=detector, chunk=chunk)
    assert prepared.record_batch is record_batch
    assert prepared.features.shape == (record_batch.num_rows, detector.layout_.n_features)
    result = score_prepared(prepared, detector=detector, chunk=chunk)
    output = chunk_output(
        record_batch, result, threshold=detector.threshold_, schema=schema, chunk=chunk
    )
    assert output.equals(score_chunk(record_batch, detector=detector, schema=schema, chunk=chunk))
    assert output.schema == schema and output.num_rows == record_batch.num_rows


def test_record_batches_scored_from_prepared_chunks_count_every_row(fitted):
    detector, batches, chunk, schema = fitted
    empty = batches[0].slice(0, 0)
    counters = {}
    outputs = list(
        score_record_batches(
            prepare_chunks([batches[0], empty, *batches[1:]], detector=detector, chunk=chunk),
            detector=detector,
            schema=schema,
            chunk=chunk,
            counters=counters,
        )
    )
    expected = [score_chunk(b, detector=detector, schema=schema, chunk=chunk) for b in batches]
    assert len(outputs) == len(expected)
    assert all(got.equals(want) for got, want in zip(outputs, expected, strict=True))
    rows = sum(b.num_rows for b in batches)
    flagged = sum(sum(o.column("is_anomaly").to_pylist()) for o in outputs)
    assert counters == {"rows_in": rows, "rows_out": rows, "flagged": flagged}


def test_a_bad_column_fails_in_the_prepare_stage_with_its_name(fitted):
    detector, batches, chunk, _ = fitted
    record_batch = batches[0]
    broken = record_batch.set_column(
        record_batch.schema.get_field_index("amount"),
        "amount",
        pa.array(["many"] * record_batch.num_rows),
    )
    with pytest.raises(ValueError, match="numeric column 'amount' cannot be read as numbers"):
        list(prepare_chunks([record_batch, broken], detector=detector, chunk=chunk))
