"""`aeflow ingest`: CSV exports -> typed Parquet batches in incoming/."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.commands import ingest as ingest_commands
from flows.commands.ingest import csv_format
from flows.config import load_config
from tasks.ingest import CsvFormat, IngestError, csv_stem, ingest_csv, read_csv_tables

REPO_ROOT = Path(__file__).resolve().parents[2]

HEADERLESS = """|1x3 Cross validator
39, State-gov, 77516, ?, <=50K.
50, ?, 83311, Bachelors, >50K.

38, Private, ?, HS-grad, <=50K
"""
FORMAT = CsvFormat(
    header=False,
    column_names=("age", "workclass", "fnlwgt", "education", "income"),
    comment_prefix="|",
    strip_whitespace=True,
    drop_columns=("education",),
    replace={"income": {"<=50K.": "<=50K", ">50K.": ">50K"}},
)


def test_a_headerless_export_becomes_typed_columns_with_row_ids(tmp_path):
    csv = tmp_path / "adult.test"
    csv.write_text(HEADERLESS)
    written = ingest_csv(
        str(csv),
        str(tmp_path / "in"),
        FORMAT,
        "row_id",
        None,
        ["age", "fnlwgt"],
        missing_tokens=["?"],
    )
    assert [(b["batch_id"], b["rows"]) for b in written] == [("adult.test", 3)]
    table = pq.read_table(written[0]["path"])
    assert table.schema == pa.schema(
        [
            ("row_id", pa.string()),
            ("age", pa.float64()),
            ("workclass", pa.string()),
            ("fnlwgt", pa.float64()),
            ("income", pa.string()),
        ]
    )
    assert table.to_pydict() == {
        "row_id": ["adult.test-0000001", "adult.test-0000002", "adult.test-0000003"],
        "age": [39.0, 50.0, 38.0],
        # text keeps its missing-value token (validation and the model null it); numbers cannot
        "workclass": ["State-gov", "?", "Private"],
        "fnlwgt": [77516.0, 83311.0, None],
        "income": ["<=50K", ">50K", "<=50K"],
    }
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["adult.test.parquet"]


def test_a_value_that_cannot_be_converted_stops_ingest_and_writes_nothing(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text(
        "id,amount,channel\n" + "".join(f"r{i},{i}.5,web\n" for i in range(10)) + "r10,twelve,web\n"
    )
    incoming = tmp_path / "in"
    with pytest.raises(
        IngestError, match=r"data row 11, column 'amount': 'twelve' is not a number"
    ):
        ingest_csv(
            str(csv), str(incoming), CsvFormat(), "id", None, ["amount"], batch_rows=4, chunk_rows=4
        )
    assert not incoming.exists() or list(incoming.iterdir()) == []


def test_batch_rows_split_a_file_into_numbered_batches(tmp_path):
    csv = tmp_path / "events.csv"
    csv.write_text("id,amount\n" + "".join(f"e{i},{i}\n" for i in range(10)))
    written = ingest_csv(
        str(csv), str(tmp_path / "in"), CsvFormat(), "id", None, ["amount"], batch_rows=4
    )
    assert [(b["batch_id"], b["rows"]) for b in written] == [
        ("events-0001", 4),
        ("events-0002", 4),
        ("events-0003", 2),
    ]
    ids = [pq.read_table(b["path"]).column("id").to_pylist() for b in written]
    assert ids == [["e0", "e1", "e2", "e3"], ["e4", "e5", "e6", "e7"], ["e8", "e9"]]


def test_dates_from_month_and_day_carry_the_year_and_split_by_month(tmp_path):
    csv = tmp_path / "campaign.csv"
    rows = [("nov", 28), ("dec", 3), ("dec", 30), ("jan", 2), ("jan", 15), ("feb", 1)]
    csv.write_text('"month";"day";"calls"\n' + "".join(f'"{m}";{d};1\n' for m, d in rows))
    fmt = CsvFormat(separator=";", date_from_parts=("month", "day", 2008))
    # small chunks: the year must carry across chunk boundaries
    written = ingest_csv(
        str(csv),
        str(tmp_path / "in"),
        fmt,
        "row_id",
        "contact_date",
        ["day", "calls"],
        split_by="month",
        chunk_rows=2,
    )
    assert [(b["batch_id"], b["rows"]) for b in written] == [
        ("campaign-2008-11", 1),
        ("campaign-2008-12", 2),
        ("campaign-2009-01", 2),
        ("campaign-2009-02", 1),
    ]
    january = pq.read_table(written[2]["path"])
    assert january.column("contact_date").to_pylist() == [
        dt.datetime(2009, 1, 2, tzinfo=dt.UTC),
        dt.datetime(2009, 1, 15, tzinfo=dt.UTC),
    ]
    assert january.column("row_id").to_pylist() == ["campaign-0000004", "campaign-0000005"]
    bad = tmp_path / "bad.csv"
    bad.write_text("month;day\nfeb;30\n")
    with pytest.raises(IngestError, match="data row 1: 2008-02-30 is not a date"):
        list(read_csv_tables(str(bad), fmt, "row_id", "contact_date", ["day"]))


def test_config_mistakes_are_named_before_reading(tmp_path):
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(IngestError, match=r"column\(s\) \['amount'\] named in the config"):
        list(read_csv_tables(str(csv), CsvFormat(), "id", None, ["amount"]))
    with pytest.raises(ValueError, match="needs column_names"):
        CsvFormat(header=False)
    with pytest.raises(ValueError, match="split_by='month' needs columns.timestamp"):
        ingest_csv(str(csv), str(tmp_path / "in"), CsvFormat(), "id", None, ["a"], split_by="month")
    assert csv_stem("KDDTest+.txt") == "KDDTest+" and csv_stem("adult.data") == "adult.data"


def test_the_ingest_command_uses_the_config(tmp_path, capsys):
    text = (REPO_ROOT / "configs" / "adult.toml").read_text()
    config = tmp_path / "adult.toml"
    config.write_text(text.replace('root = "../data"', 'root = "root"'))
    csv = tmp_path / "adult.test"
    csv.write_text(
        "|1x3 Cross validator\n"
        + "".join(
            f"{30 + i}, Private, 1000{i}, HS-grad, 9, Never-married, Sales, Own-child, White, Male, "
            f"0, 0, 40, United-States, {'>50K.' if i % 2 else '<=50K.'}\n"
            for i in range(5)
        )
    )
    root = argparse.ArgumentParser(prog="aeflow")
    ingest_commands.register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(
        ["ingest", "--config", str(config), "--csv", str(csv), "--batch-rows", "3"]
    )
    assert args.handler(args) == 0
    assert "ingested 5 rows" in capsys.readouterr().out
    batches = sorted((tmp_path / "root" / "incoming" / "adult").glob("*.parquet"))
    assert [b.name for b in batches] == ["adult.test-0001.parquet", "adult.test-0002.parquet"]
    labels = pq.read_table(batches[0]).column("income").to_pylist()
    assert labels == ["<=50K", ">50K", "<=50K"]


# ------------------------------------------------------------------------- the real datasets
def test_adult_test_labels_lose_their_dots(shared_datasets, tmp_path):
    cfg = load_config(REPO_ROOT / "configs" / "adult.toml")
    tables = list(
        read_csv_tables(
            str(shared_datasets / "adult" / "adult.test"),
            csv_format(cfg),
            cfg.columns.id,
            cfg.columns.timestamp,
            cfg.columns.numeric,
        )
    )
    table = pa.concat_tables(tables)
    assert table.num_rows == 16281
    assert set(table.column("income").to_pylist()) == {"<=50K", ">50K"}
    assert table.column_names == ["row_id", *cfg.ingest.column_names]


def test_bank_full_splits_into_its_30_months(shared_datasets, tmp_path):
    cfg = load_config(REPO_ROOT / "configs" / "bank.toml")
    written = ingest_csv(
        str(shared_datasets / "bank_marketing" / "bank-full.csv"),
        str(tmp_path / "in"),
        csv_format(cfg),
        cfg.columns.id,
        cfg.columns.timestamp,
        cfg.columns.numeric,
        split_by="month",
    )
    assert len(written) == 30 and sum(b["rows"] for b in written) == 45211
    assert (written[0]["batch_id"], written[0]["rows"]) == ("bank-full-2008-05", 7957)
    assert (written[-1]["batch_id"], written[-1]["rows"]) == ("bank-full-2010-11", 75)
    first = pq.read_table(written[0]["path"])
    assert "none" in first.column("poutcome").to_pylist()  # `unknown` there is a real level
    assert "unknown" not in first.column("poutcome").to_pylist()


def test_nsl_kdd_drops_the_label_leaking_difficulty(shared_datasets):
    cfg = load_config(REPO_ROOT / "configs" / "nslkdd.toml")
    [table, *_] = read_csv_tables(
        str(shared_datasets / "nslkdd" / "KDDTest+.txt"),
        csv_format(cfg),
        cfg.columns.id,
        None,
        cfg.columns.numeric,
    )
    assert "difficulty" not in table.column_names and len(table.column_names) == 43
    assert table.schema.field("src_bytes").type == pa.float64()
