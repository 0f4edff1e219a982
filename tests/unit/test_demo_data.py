"""Tests of the demo data generator on small real Parquet files."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from tasks.demo_data import (
    ANOMALY_KINDS,
    CATEGORICAL_COLUMNS,
    DEMO_DATASET,
    ID_COLUMN,
    LABEL_COLUMN,
    MALFORMATION_KIND,
    MALFORMED_MISSING_COLUMN,
    MALFORMED_STRING_COLUMN,
    MISSING_RATES,
    NUMERIC_COLUMNS,
    SCHEMA,
    TIMESTAMP_COLUMN,
    DemoManifest,
    generate_demo_data,
)

ROWS = 2000
DAYS = 4
# Defaults drift_day=-3 and malformed_day=-2 resolve to days 1 and 2; days 0 and 3 are clean.
CLEAN_DAYS = (0, 3)


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    out_dir = tmp_path_factory.mktemp("demo")
    return generate_demo_data(out_dir, days=DAYS, rows_per_day=ROWS, seed=0)


@pytest.fixture(scope="module")
def clean(demo: DemoManifest) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(demo.paths[i]) for i in CLEAN_DAYS], ignore_index=True)


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(
    demo: DemoManifest, tmp_path: Path
) -> None:
    again = generate_demo_data(tmp_path / "again", days=DAYS, rows_per_day=ROWS, seed=0)
    other = generate_demo_data(tmp_path / "other", days=DAYS, rows_per_day=ROWS, seed=1)

    assert [_sha256(p) for p in again.paths] == [_sha256(p) for p in demo.paths]
    for ours, theirs in zip(demo.paths, other.paths, strict=True):
        assert _sha256(ours) != _sha256(theirs)
    # Apart from where the files went, the manifests agree.
    assert {**json.loads(again.to_json()), "paths": None} == {
        **json.loads(demo.to_json()),
        "paths": None,
    }


def test_earlier_days_do_not_depend_on_the_number_of_days(
    demo: DemoManifest, tmp_path: Path
) -> None:
    single = generate_demo_data(
        tmp_path, days=1, rows_per_day=ROWS, seed=0, drift_day=None, malformed_day=None
    )
    assert _sha256(single.paths[0]) == _sha256(demo.paths[0])


def test_manifest_describes_the_files_and_nothing_else_is_written(demo: DemoManifest) -> None:
    out_dir = Path(demo.paths[0]).parent
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "2026-01-01.parquet",
        "2026-01-02.parquet",
        "2026-01-03.parquet",
        "2026-01-04.parquet",
    ]
    assert demo.dataset == DEMO_DATASET
    assert demo.batch_ids == [Path(p).stem for p in demo.paths]
    assert demo.rows_per_file == [pq.read_metadata(p).num_rows for p in demo.paths]
    assert demo.total_rows == DAYS * ROWS
    assert (demo.drift_day, demo.malformed_day) == (1, 2)
    assert (demo.drift_batch_id, demo.malformed_batch_id) == ("2026-01-02", "2026-01-03")
    assert demo.malformation_kind == MALFORMATION_KIND
    for path, counts in zip(demo.paths, demo.anomaly_counts_per_file, strict=True):
        labels = pq.read_table(path, columns=[LABEL_COLUMN]).column(0).to_numpy()
        assert labels.sum() == sum(counts.values())
    assert demo.anomaly_counts == {
        kind: sum(c[kind] for c in demo.anomaly_counts_per_file) for kind in ANOMALY_KINDS
    }
    assert DemoManifest.from_json(demo.to_json()) == demo
    assert json.loads(demo.to_json())["malformed_day"] == 2


def test_clean_and_drifted_days_have_the_declared_schema(demo: DemoManifest) -> None:
    for index in (0, 1, 3):
        assert pq.read_schema(demo.paths[index]).remove_metadata() == SCHEMA
    frame = pd.read_parquet(demo.paths[0])
    assert list(frame.columns) == SCHEMA.names
    assert pd.api.types.is_string_dtype(frame[ID_COLUMN])
    assert isinstance(frame[TIMESTAMP_COLUMN].dtype, pd.DatetimeTZDtype)
    assert str(frame[TIMESTAMP_COLUMN].dt.tz) == "UTC"
    assert len(NUMERIC_COLUMNS) >= 8
    for column in NUMERIC_COLUMNS:
        assert pd.api.types.is_numeric_dtype(frame[column]), column
    for column in CATEGORICAL_COLUMNS:
        assert pd.api.types.is_string_dtype(frame[column]), column
    assert frame[LABEL_COLUMN].dtype == np.int8
    assert set(frame[LABEL_COLUMN].unique()) == {0, 1}


def test_marginals_and_correlations_look_like_card_transactions(clean: pd.DataFrame) -> None:
    normal = clean[clean[LABEL_COLUMN] == 0]
    assert (normal["amount"] > 0).all()
    # Lognormal amounts: a long right tail.
    assert normal["amount"].mean() > 1.5 * normal["amount"].median()
    assert normal["merchant_risk_score"].dropna().between(0, 1).all()
    assert normal["balance_ratio"].dropna().between(0, 1).all()
    assert (normal["customer_age"] >= 18).all()
    assert (normal["account_age_days"] <= (normal["customer_age"] - 17) * 366).all()

    corr = normal[list(NUMERIC_COLUMNS)].corr(method="spearman")
    assert corr.loc["amount", "amount_7d_avg"] > 0.3
    assert corr.loc["credit_limit", "amount_7d_avg"] > 0.3
    assert corr.loc["customer_age", "account_age_days"] > 0.5
    assert corr.loc["tx_count_24h", "seconds_since_last_tx"] < -0.5


def test_categorical_levels_are_many_and_skewed(clean: pd.DataFrame) -> None:
    category_share = clean["merchant_category"].value_counts(normalize=True)
    assert len(category_share) >= 50
    assert category_share.iloc[0] > 10 * category_share.median()
    assert set(clean["channel"].unique()) == {
        "pos",
        "contactless",
        "online",
        "mobile_wallet",
        "atm",
    }
    country_share = clean["country"].value_counts(normalize=True)
    assert 12 <= len(country_share) <= 16
    assert country_share.iloc[0] > 0.25


def test_missing_values_are_about_two_percent_in_the_nullable_columns(
    clean: pd.DataFrame,
) -> None:
    nullable = list(MISSING_RATES)
    assert clean[nullable].isna().to_numpy().mean() == pytest.approx(0.0186, abs=0.005)
    for column, rate in MISSING_RATES.items():
        assert 0.5 * rate <= clean[column].isna().mean() <= 1.6 * rate, column
    complete = [c for c in clean.columns if c not in MISSING_RATES]
    assert not clean[complete].isna().any().any()
    # Both kinds of columns carry nulls.
    assert set(nullable) & set(NUMERIC_COLUMNS)
    assert set(nullable) & set(CATEGORICAL_COLUMNS)


def test_anomalies_are_one_to_three_percent_and_every_kind_is_present(
    demo: DemoManifest, clean: pd.DataFrame
) -> None:
    assert 0.01 <= clean[LABEL_COLUMN].mean() <= 0.03
    assert set(demo.anomaly_counts) == set(ANOMALY_KINDS)
    assert len(ANOMALY_KINDS) >= 3
    for counts in demo.anomaly_counts_per_file:
        assert all(counts[kind] >= 1 for kind in ANOMALY_KINDS)
        assert 0.01 <= sum(counts.values()) / ROWS <= 0.03


def test_rare_combinations_never_appear_in_normal_rows(clean: pd.DataFrame) -> None:
    normal = clean[clean[LABEL_COLUMN] == 0]
    anomalous = clean[clean[LABEL_COLUMN] == 1]
    hub_in_person = normal["country"].isin(["IE", "LU", "SG"]) & normal["channel"].isin(
        ["pos", "contactless", "atm"]
    )
    assert not hub_in_person.any()
    cash_pairs = normal["channel"].eq("atm") != normal["merchant_category"].eq(
        "atm_cash_withdrawal"
    )
    # A null category hides the pair, so only rows with a category count.
    assert not cash_pairs[normal["merchant_category"].notna()].any()
    pairs = set(zip(normal["channel"], normal["merchant_category"], strict=True))
    unseen = [
        pair not in pairs
        for pair in zip(anomalous["channel"], anomalous["merchant_category"], strict=True)
    ]
    assert any(unseen)


def test_isolation_forest_finds_the_injected_anomalies(clean: pd.DataFrame) -> None:
    numeric = clean[list(NUMERIC_COLUMNS)]
    features = numeric.fillna(numeric.median())
    forest = IsolationForest(n_estimators=200, random_state=0).fit(features)
    auroc = roc_auc_score(clean[LABEL_COLUMN], -forest.score_samples(features))
    assert 0.7 < auroc < 0.99


def test_drift_day_is_shifted_but_schema_valid(demo: DemoManifest, clean: pd.DataFrame) -> None:
    drifted = pd.read_parquet(demo.paths[demo.drift_day])
    assert pq.read_schema(demo.paths[demo.drift_day]).remove_metadata() == SCHEMA
    normal = clean[clean[LABEL_COLUMN] == 0]
    drifted_normal = drifted[drifted[LABEL_COLUMN] == 0]
    assert drifted_normal["amount"].median() / normal["amount"].median() > 1.5
    online_share = normal["channel"].eq("online").mean()
    assert drifted_normal["channel"].eq("online").mean() > online_share + 0.08
    electronics_share = normal["merchant_category"].eq("electronics_stores").mean()
    assert drifted_normal["merchant_category"].eq("electronics_stores").mean() > (
        3 * electronics_share
    )


def test_malformed_day_breaks_the_schema(demo: DemoManifest) -> None:
    schema = pq.read_schema(demo.paths[demo.malformed_day])
    assert MALFORMED_MISSING_COLUMN not in schema.names
    assert schema.field(MALFORMED_STRING_COLUMN).type == pa.string()
    assert set(schema.names) == set(SCHEMA.names) - {MALFORMED_MISSING_COLUMN}
    amounts = pd.read_parquet(demo.paths[demo.malformed_day], columns=[MALFORMED_STRING_COLUMN])
    assert pd.api.types.is_string_dtype(amounts[MALFORMED_STRING_COLUMN])
    # The text still holds the numbers, as a faulty export would write them.
    assert (pd.to_numeric(amounts[MALFORMED_STRING_COLUMN]) > 0).all()


def test_ids_are_unique_across_days_and_name_their_day(demo: DemoManifest) -> None:
    ids = pd.concat(
        [pd.read_parquet(p, columns=[ID_COLUMN])[ID_COLUMN] for p in demo.paths],
        ignore_index=True,
    )
    assert ids.is_unique
    assert len(ids) == DAYS * ROWS
    assert ids.str.fullmatch(r"tx-\d{8}-\d{7}").all()
    first_day_ids = pd.read_parquet(demo.paths[0], columns=[ID_COLUMN])[ID_COLUMN]
    assert first_day_ids.str.startswith("tx-20260101-").all()


def test_timestamps_are_sorted_and_inside_their_day(demo: DemoManifest) -> None:
    for batch_id, path in zip(demo.batch_ids, demo.paths, strict=True):
        times = pd.read_parquet(path, columns=[TIMESTAMP_COLUMN])[TIMESTAMP_COLUMN]
        day_start = pd.Timestamp(datetime.fromisoformat(batch_id).replace(tzinfo=UTC))
        assert times.is_monotonic_increasing
        assert times.min() >= day_start
        assert times.max() < day_start + timedelta(days=1)
        # Spread over the day, busier by day than at night.
        hours = times.dt.hour
        assert hours.nunique() == 24
        assert hours.between(9, 20).mean() > 0.6


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"days": 0}, ValueError, "days must be >= 1, got 0"),
        ({"days": 2.5}, TypeError, "days must be an int"),
        ({"days": True}, TypeError, "days must be an int"),
        ({"rows_per_day": 10}, ValueError, "rows_per_day must be >= 200, got 10"),
        ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
        ({"start_date": "2026-13-01"}, ValueError, "start_date must be an ISO date"),
        ({"days": 3, "drift_day": 3}, ValueError, r"drift_day must be in \[-3, 2\]"),
        ({"days": 3, "malformed_day": -4}, ValueError, r"malformed_day must be in \[-3, 2\]"),
        ({"days": 3, "drift_day": 1, "malformed_day": -2}, ValueError, "must be different days"),
        ({"days": 2}, ValueError, "drift_day must be in"),
        ({"drift_day": "last"}, TypeError, "drift_day must be an int or None"),
    ],
)
def test_bad_arguments_are_rejected_before_anything_is_written(
    tmp_path: Path, arguments: dict, error: type[Exception], message: str
) -> None:
    out_dir = tmp_path / "out"
    with pytest.raises(error, match=message):
        generate_demo_data(out_dir, **{"rows_per_day": 200, **arguments})
    assert not out_dir.exists()


def test_out_dir_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file.parquet"
    not_a_dir.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="out_dir must be a directory"):
        generate_demo_data(not_a_dir, days=1, rows_per_day=200, drift_day=None, malformed_day=None)
