"""A corpus of malformed batches against the committed demo contract (expectations/demo.json).

Every batch ends quarantined or scored-with-warning as the policy says, with a report naming the
cause; every quarantined input is kept byte for byte; rows in = rows scored + rows quarantined.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from model_support import demo_columns, demo_validation

from tasks.demo_data import (
    ID_COLUMN,
    TIMESTAMP_COLUMN,
    generate_demo_data,
)
from tasks.io import Storage, list_batches
from tasks.markdown import md_text
from tasks.validation import quarantine, validate_batch

REPO_ROOT = Path(__file__).resolve().parents[2]
ROWS = 1200  # the demo contract warns below 1000 rows a day


def replace(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def write(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)


def truncated(table: pa.Table, path: Path) -> None:
    write(table, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def zero_bytes(table: pa.Table, path: Path) -> None:
    path.write_bytes(b"")


def csv_named_parquet(table: pa.Table, path: Path) -> None:
    path.write_text("transaction_id,amount\nt1,12.5\n")


def parts_with_different_schemas(table: pa.Table, path: Path) -> None:
    folder = path.with_suffix("")
    folder.mkdir()
    half = table.num_rows // 2
    write(table.slice(0, half), folder / "part-0.parquet")
    write(
        replace(table.slice(half), "amount", table.column("amount").slice(half).cast(pa.string())),
        folder / "part-1.parquet",
    )


def with_nulls(column: pa.ChunkedArray, every: int) -> pa.Array:
    values = column.to_pylist()
    return pa.array([None if i % every == 0 else v for i, v in enumerate(values)], column.type)


# (name, how to write the batch from a clean day, expected status, words the reason must name)
Case = tuple[str, Callable[[pa.Table, Path], None], str, list[str]]
CASES: list[Case] = [
    ("clean", write, "passed", ["passed all"]),
    (
        "missing_column",
        lambda t, p: write(t.drop_columns(["merchant_risk_score"]), p),
        "quarantined",
        ["missing column(s) ['merchant_risk_score']"],
    ),
    (
        "extra_column",
        lambda t, p: write(t.append_column("promo_code", pa.array(["X"] * t.num_rows)), p),
        "quarantined",
        ["column set differs", "promo_code"],
    ),
    (
        "renamed_column",
        lambda t, p: write(
            t.rename_columns(["amount_eur" if n == "amount" else n for n in t.column_names]), p
        ),
        "quarantined",
        ["missing column(s) ['amount']", "amount_eur", "renamed?"],
    ),
    (
        "strings_in_numeric",
        lambda t, p: write(
            replace(
                t,
                "amount",
                pa.array(
                    [
                        "n/a" if i % 50 == 0 else str(v)
                        for i, v in enumerate(t.column("amount").to_pylist())
                    ]
                ),
            ),
            p,
        ),
        "quarantined",
        ["'amount' holds text that is not a number"],
    ),
    (
        "numeric_stored_as_text",
        lambda t, p: write(
            replace(t, "credit_limit", t.column("credit_limit").cast(pa.string())), p
        ),
        "quarantined",
        ["'credit_limit' is stored as text"],
    ),
    (
        "wrong_dtype_label_as_text",
        lambda t, p: write(
            replace(t, "is_injected_anomaly", t.column("is_injected_anomaly").cast(pa.string())), p
        ),
        "quarantined",
        ["expect_column_values_to_be_in_type_list on is_injected_anomaly", "str"],
    ),
    (
        "category_turned_numeric",
        lambda t, p: write(
            replace(
                t,
                "channel",
                pc.dictionary_encode(t.column("channel")).combine_chunks().indices.cast(pa.int64()),
            ),
            p,
        ),
        "quarantined",
        ["expect_column_values_to_be_of_type on channel", "int64"],
    ),
    (
        "timestamp_as_text",
        lambda t, p: write(
            replace(t, TIMESTAMP_COLUMN, pc.strftime(t.column(TIMESTAMP_COLUMN))), p
        ),
        "quarantined",
        ["expect_column_values_to_be_of_type on event_time", "str"],
    ),
    (
        "all_null_column",
        lambda t, p: write(
            replace(t, "merchant_risk_score", pa.nulls(t.num_rows, pa.float64())), p
        ),
        "quarantined",
        ["expect_column_values_to_not_be_null on merchant_risk_score", "(100%)"],
    ),
    ("empty_file", lambda t, p: write(t.slice(0, 0), p), "quarantined", ["the batch has no rows"]),
    ("zero_byte_file", zero_bytes, "quarantined", ["zero-byte file"]),
    ("truncated_parquet", truncated, "quarantined", ["cannot be read", "truncated"]),
    ("not_parquet", csv_named_parquet, "quarantined", ["cannot be read"]),
    ("parts_disagree", parts_with_different_schemas, "quarantined", ["cannot be read"]),
    (
        "duplicate_column_names",
        lambda t, p: write(
            pa.Table.from_arrays([*t.columns, t.column("amount")], [*t.column_names, "amount"]), p
        ),
        "quarantined",
        ["['amount'] appear more than once"],
    ),
    (
        "duplicate_ids",
        lambda t, p: write(
            replace(
                t,
                ID_COLUMN,
                pa.array(
                    ["dup" if i < 3 else v for i, v in enumerate(t.column(ID_COLUMN).to_pylist())]
                ),
            ),
            p,
        ),
        "quarantined",
        ["expect_column_values_to_be_unique on transaction_id", "3 (0.25%)"],
    ),
    (
        "null_ids",
        lambda t, p: write(replace(t, ID_COLUMN, with_nulls(t.column(ID_COLUMN), 100)), p),
        "quarantined",
        ["expect_column_values_to_not_be_null on transaction_id"],
    ),
    (
        "inf_values",
        lambda t, p: write(
            replace(
                t,
                "amount",
                pa.array(
                    [np.inf if i == 7 else v for i, v in enumerate(t.column("amount").to_pylist())]
                ),
            ),
            p,
        ),
        "quarantined",
        ["'amount' holds infinite values"],
    ),
    (
        "unseen_category_level",
        lambda t, p: write(
            replace(
                t,
                "country",
                pa.array(
                    [
                        "ZZ" if i % 40 == 0 else v
                        for i, v in enumerate(t.column("country").to_pylist())
                    ]
                ),
            ),
            p,
        ),
        "warning",
        ["expect_column_values_to_be_in_set on country", "ZZ"],
    ),
    (
        "more_nulls_than_usual",
        lambda t, p: write(replace(t, "customer_age", with_nulls(t.column("customer_age"), 5)), p),
        "warning",
        ["expect_column_values_to_not_be_null on customer_age"],
    ),
    (
        "too_few_rows",
        lambda t, p: write(t.slice(0, 300), p),
        "warning",
        ["expect_table_row_count_to_be_between: observed 300"],
    ),
    (
        "categorical_dictionary_encoded",  # a pandas category is still text: no failure
        lambda t, p: write(
            replace(t, "merchant_category", pc.dictionary_encode(t.column("merchant_category"))), p
        ),
        "passed",
        ["passed all"],
    ),
]


def sha256(path: Path) -> str:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in (f for f in files if f.is_file()):
        digest.update(file.read_bytes())
    return digest.hexdigest()


def readable_rows(path: Path) -> int | None:
    """Rows any Parquet reader can see in a batch (None, unknown, when a footer cannot be read)."""
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    try:
        return sum(pq.read_metadata(f).num_rows for f in files)
    except Exception:
        return None


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    """Write every case into incoming/, then validate and quarantine them like the score flow."""
    base = tmp_path_factory.mktemp("corpus")
    clean_dir = base / "clean"
    generate_demo_data(
        clean_dir, days=1, rows_per_day=ROWS, seed=11, drift_day=None, malformed_day=None
    )
    clean = pq.read_table(next(clean_dir.glob("*.parquet")))
    layout = Storage(str(base / "root"), "demo")
    incoming = Path(layout.incoming)
    incoming.mkdir(parents=True)
    originals = {}
    for name, make, _, _ in CASES:
        make(clean, incoming / f"{name}.parquet")
        written = incoming / name if (incoming / name).is_dir() else incoming / f"{name}.parquet"
        originals[name] = {"sha256": sha256(written), "rows": readable_rows(written)}
    outcomes, quarantined, scored_rows = {}, {}, 0
    for batch in list_batches(layout.incoming):
        outcome = validate_batch(batch, columns=demo_columns(), validation=demo_validation())
        outcomes[batch.batch_id] = outcome
        if outcome.accepted:
            scored_rows += outcome.rows
        else:
            quarantined[batch.batch_id] = quarantine(batch, outcome, storage=layout).to_dict()
    return {
        "layout": layout,
        "originals": originals,
        "outcomes": outcomes,
        "quarantined": quarantined,
        "scored_rows": scored_rows,
    }


def test_the_corpus_covers_at_least_15_malformed_batches():
    assert len([c for c in CASES if c[2] != "passed"]) >= 15


@pytest.mark.parametrize(("name", "status", "causes"), [(c[0], c[2], c[3]) for c in CASES])
def test_each_batch_ends_as_the_policy_says_with_its_cause_named(corpus_run, name, status, causes):
    outcome = corpus_run["outcomes"][name]
    assert outcome.status == status, outcome.reason
    assert outcome.accepted == (status != "quarantined")
    for cause in causes:
        assert cause in outcome.reason
    if status == "quarantined":
        folder = Path(corpus_run["layout"].quarantine(name))
        report = json.loads((folder / "report.json").read_text())
        markdown = (folder / "report.md").read_text()
        assert report["status"] == "quarantined" and report["reason"] == outcome.reason
        assert report["critical"] and all(f["severity"] == "critical" for f in report["critical"])
        for failure in report["critical"]:
            assert failure["type"] in markdown
        assert md_text(outcome.reason) in markdown  # escaped: user values are never markup


def test_quarantine_keeps_every_input_byte_for_byte(corpus_run):
    for name, moved in corpus_run["quarantined"].items():
        folder = Path(moved["quarantine_dir"])
        [kept] = list((folder / "input").iterdir())
        report = json.loads((folder / "report.json").read_text())
        assert sha256(kept) == corpus_run["originals"][name]["sha256"]
        assert report["input"]["name"] == kept.name
        assert not (Path(corpus_run["layout"].incoming) / kept.name).exists()


def test_rows_in_equal_rows_scored_plus_rows_quarantined(corpus_run):
    originals, quarantined = corpus_run["originals"], corpus_run["quarantined"]
    # An unreadable file's row count is unknown and reported so (None), never as 0 rows.
    unknown = {name for name, o in originals.items() if o["rows"] is None}
    assert unknown == {"truncated_parquet", "zero_byte_file", "not_parquet"}
    assert {name for name, q in quarantined.items() if q["rows"] is None} == unknown
    for name in unknown:
        report = json.loads((Path(quarantined[name]["quarantine_dir"]) / "report.json").read_text())
        assert report["rows"] is None
    rows_in = sum(o["rows"] for name, o in originals.items() if name not in unknown)
    rows_quarantined = sum(q["rows"] for name, q in quarantined.items() if name not in unknown)
    assert rows_in == corpus_run["scored_rows"] + rows_quarantined
    assert rows_in > 0 and rows_quarantined > 0 and corpus_run["scored_rows"] > 0
    # what stayed in incoming is exactly what was accepted
    left = {b.batch_id for b in list_batches(corpus_run["layout"].incoming)}
    assert left == {n for n, o in corpus_run["outcomes"].items() if o.accepted}
