"""score_rows: Arrow rows -> scores through the Arrow replay, bit-identical to the frame path."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from model_support import fit_tiny_detector

from tasks.demo_data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS, generate_demo_data
from tasks.frames import feature_frame
from tasks.io import read_table
from tasks.row_scoring import ArrowReplay, preprocess_rows, replay_for, score_rows

NUMERIC, CATEGORICAL = list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS)
TOKENS = ["?", "unknown"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rows")
    manifest = generate_demo_data(
        folder, days=2, rows_per_day=1200, seed=5, drift_day=None, malformed_day=None
    )
    tables = [read_table(str(folder / f"{b}.parquet")) for b in manifest.batch_ids]
    return fit_tiny_detector(tables[0]), tables[1]


def _awkward(table: pa.Table) -> pa.Table:
    """The batch with what real batches carry: nulls, NaN and infinities in numeric columns, a
    numeric column written as text with missing-value tokens, tokens (with spaces), nulls and
    levels never seen in categorical ones, large_string and dictionary-typed columns, chunks."""
    n = table.num_rows
    rows = np.arange(n)
    amount = table.column("amount").to_numpy().copy()
    amount[rows % 11 == 0] = np.nan
    amount[rows % 13 == 0] = np.inf
    amount[rows % 17 == 0] = -np.inf
    table = table.set_column(
        table.schema.get_field_index("amount"),
        "amount",
        pa.array(amount, mask=rows % 7 == 0),
    )
    ages = [
        None if i % 9 == 0 else " ? " if i % 10 == 0 else repr(float(v))
        for i, v in enumerate(table.column("customer_age").to_pylist())
    ]
    table = table.set_column(
        table.schema.get_field_index("customer_age"), "customer_age", pa.array(ages, pa.string())
    )
    channel = [
        None if i % 8 == 0 else "unknown " if i % 5 == 0 else "teleport" if i % 23 == 0 else v
        for i, v in enumerate(table.column("channel").to_pylist())
    ]
    table = table.set_column(
        table.schema.get_field_index("channel"), "channel", pa.array(channel, pa.large_string())
    )
    merchant = table.column("merchant_category").combine_chunks().dictionary_encode()
    table = table.set_column(
        table.schema.get_field_index("merchant_category"), "merchant_category", merchant
    )
    country = [
        "?" if i % 6 == 0 else "Atlantis" if i % 29 == 0 else v
        for i, v in enumerate(table.column("country").to_pylist())
    ]
    table = table.set_column(
        table.schema.get_field_index("country"), "country", pa.array(country, pa.string())
    )
    return pa.concat_tables([table.slice(0, n // 3), table.slice(n // 3)])


def _assert_same(a, b) -> None:
    for field in ("scores", "percentiles", "is_anomaly", "latent", "contributions"):
        left, right = np.asarray(getattr(a, field)), np.asarray(getattr(b, field))
        assert left.dtype == right.dtype and left.tobytes() == right.tobytes(), field
    assert a.top_features == b.top_features


def test_arrow_replay_scores_bit_identical_to_the_frame_path(fitted):
    detector, table = fitted
    table = _awkward(table)
    assert isinstance(replay_for(detector, NUMERIC, CATEGORICAL, TOKENS), ArrowReplay)
    through_frame = detector.score(feature_frame(table, NUMERIC, CATEGORICAL, TOKENS), top_k=4)
    _assert_same(score_rows(table, detector, NUMERIC, CATEGORICAL, TOKENS, top_k=4), through_frame)
    # A row alone and a ragged slice get the bits they get inside the whole batch.
    for start, length in ((0, 1), (10, 1), (130, 1), (3, 77)):
        alone = score_rows(
            table.slice(start, length), detector, NUMERIC, CATEGORICAL, TOKENS, top_k=4
        )
        assert alone.scores.tobytes() == through_frame.scores[start : start + length].tobytes()
        assert alone.latent.tobytes() == through_frame.latent[start : start + length].tobytes()
        assert alone.top_features == through_frame.top_features[start : start + length]


def test_replay_errors_name_the_column_as_the_frame_path_does(fitted):
    detector, table = fitted
    without = table.drop_columns(["channel"])
    with pytest.raises(ValueError, match=r"batch lacks feature column\(s\) \['channel'\]"):
        score_rows(without, detector, NUMERIC, CATEGORICAL)
    text = table.set_column(
        table.schema.get_field_index("amount"),
        "amount",
        pa.array(["12.5", "lots"] * (table.num_rows // 2), pa.string()),
    )
    with pytest.raises(ValueError, match="numeric column 'amount' cannot be read as numbers"):
        score_rows(text, detector, NUMERIC, CATEGORICAL)


def test_other_columns_than_the_models_fall_back_to_the_frame_path(fitted):
    detector, table = fitted
    numeric = [c for c in NUMERIC if c != "amount"]
    assert replay_for(detector, numeric, CATEGORICAL) is None
    # The frame path then reports what the model lacks, as before.
    with pytest.raises(ValueError, match="amount"):
        score_rows(table, detector, numeric, CATEGORICAL)
    # Same columns in another order: the replay looks columns up by name.
    shuffled = replay_for(detector, NUMERIC[::-1], CATEGORICAL[::-1])
    assert shuffled is not None
    _assert_same(
        score_rows(table, detector, NUMERIC[::-1], CATEGORICAL[::-1]),
        detector.score(feature_frame(table, NUMERIC, CATEGORICAL)),
    )


def test_a_refitted_detector_gets_a_replay_of_its_new_preprocessing(fitted):
    _, table = fitted
    detector = fit_tiny_detector(table.slice(0, 400), epochs=1)
    first = replay_for(detector, NUMERIC, CATEGORICAL)
    score_rows(table, detector, NUMERIC, CATEGORICAL)
    detector.fit(feature_frame(table.slice(400), NUMERIC, CATEGORICAL))  # a new preprocessor_
    assert replay_for(detector, NUMERIC, CATEGORICAL) is not first
    _assert_same(
        score_rows(table, detector, NUMERIC, CATEGORICAL),
        detector.score(feature_frame(table, NUMERIC, CATEGORICAL)),
    )


def test_rows_preprocessed_first_score_to_the_same_bits(fitted):
    detector, table = fitted
    table = _awkward(table)
    features = preprocess_rows(table, detector, NUMERIC, CATEGORICAL, TOKENS)
    assert features.dtype == np.float32 and features.shape[0] == table.num_rows
    _assert_same(
        score_rows(table, detector, NUMERIC, CATEGORICAL, TOKENS, features=features),
        score_rows(table, detector, NUMERIC, CATEGORICAL, TOKENS),
    )
    # A model without a replay for these columns is scored through the frame.
    assert preprocess_rows(table, detector, NUMERIC[1:], CATEGORICAL) is None


@pytest.mark.parametrize("kind", [pa.int64(), pa.uint64(), pa.decimal128(38, 0)])
def test_integers_beyond_2_53_are_numbers_on_both_paths(fitted, kind):
    # A byte count, a nanosecond epoch or an amount in cents can pass 2**53, where float64 stops
    # holding every integer: the value is rounded to the nearest float64 (as pandas and numpy
    # round it), not refused as "cannot be read as numbers".
    detector, table = fitted
    big = [2**53 + 1, 2**63 - 1 if kind != pa.int64() else -(2**62) - 1]
    counts = pa.array(big * (table.num_rows // 2) + big[: table.num_rows % 2], kind)
    table = table.set_column(table.schema.get_field_index("tx_count_24h"), "tx_count_24h", counts)
    frame = feature_frame(table, NUMERIC, CATEGORICAL)
    assert frame["tx_count_24h"].iloc[0] == float(2**53)  # the nearest float64 of 2**53 + 1
    _assert_same(
        score_rows(table, detector, NUMERIC, CATEGORICAL, top_k=3), detector.score(frame, top_k=3)
    )
