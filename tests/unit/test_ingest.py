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
from tasks.ingest import (
    Batching,
    CsvFormat,
    IngestError,
    csv_stem,
    ingest_csv,
    read_csv_tables,
)
from tasks.io import Storage
from tasks.settings import ColumnsSettings

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


def cols(id_column, timestamp, numeric, missing=(), label=None) -> ColumnsSettings:
    """Column roles for an ingest (``missing``: the missing-value tokens)."""
    return ColumnsSettings(
        id=id_column,
        timestamp=timestamp,
        numeric=list(numeric),
        missing_values=list(missing),
        label=label,
    )


def test_a_headerless_export_becomes_typed_columns_with_row_ids(tmp_path):
    csv = tmp_path / "adult.test"
    csv.write_text(HEADERLESS)
    written = ingest_csv(
        str(csv),
        storage=Storage(str(tmp_path), "ds"),
        fmt=FORMAT,
        columns=cols("row_id", None, ["age", "fnlwgt"], ["?"]),
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
    incoming = Path(Storage(str(tmp_path), "ds").incoming)
    assert sorted(p.name for p in incoming.iterdir()) == ["adult.test.parquet"]


def test_a_value_that_cannot_be_converted_stops_ingest_and_writes_nothing(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text(
        "id,amount,channel\n" + "".join(f"r{i},{i}.5,web\n" for i in range(10)) + "r10,twelve,web\n"
    )
    incoming = Path(Storage(str(tmp_path), "ds").incoming)
    with pytest.raises(
        IngestError, match=r"data row 11, column 'amount': 'twelve' is not a number"
    ):
        ingest_csv(
            str(csv), storage=Storage(str(tmp_path), "ds"), fmt=CsvFormat(), columns=cols("id", None, ["amount"]),
            batching=Batching(batch_rows=4), chunk_rows=4,
        )  # fmt: skip
    assert not incoming.exists() or list(incoming.iterdir()) == []


def test_batch_rows_split_a_file_into_numbered_batches(tmp_path):
    csv = tmp_path / "events.csv"
    csv.write_text("id,amount\n" + "".join(f"e{i},{i}\n" for i in range(10)))
    written = ingest_csv(
        str(csv), storage=Storage(str(tmp_path), "ds"), fmt=CsvFormat(),
        columns=cols("id", None, ["amount"]), batching=Batching(batch_rows=4),
    )  # fmt: skip
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
        storage=Storage(str(tmp_path), "ds"),
        fmt=fmt,
        columns=cols("row_id", "contact_date", ["day", "calls"]),
        batching=Batching(split_by="month"),
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
        list(read_csv_tables(str(bad), fmt, cols("row_id", "contact_date", ["day"])))


def test_config_mistakes_are_named_before_reading(tmp_path):
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(IngestError, match=r"column\(s\) \['amount'\] named in the config"):
        list(read_csv_tables(str(csv), CsvFormat(), cols("id", None, ["amount"])))
    with pytest.raises(ValueError, match="needs column_names"):
        CsvFormat(header=False)
    with pytest.raises(ValueError, match="split_by='month' needs columns.timestamp"):
        ingest_csv(
            str(csv), storage=Storage(str(tmp_path), "ds"), fmt=CsvFormat(),
            columns=cols("id", None, ["a"]), batching=Batching(split_by="month"),
        )  # fmt: skip
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


def test_the_ingest_command_names_batches_by_date(tmp_path, capsys):
    text = (REPO_ROOT / "configs" / "adult.toml").read_text()
    config = tmp_path / "adult.toml"
    config.write_text(text.replace('root = "../data"', 'root = "root"'))
    csv = tmp_path / "prod.csv"
    csv.write_text(
        "".join(
            f"{30 + i}, Private, 1000{i}, HS-grad, 9, Never-married, Sales, Own-child, White, "
            "Male, 0, 0, 40, United-States\n"
            for i in range(5)
        )
    )  # a production export: no income column
    root = argparse.ArgumentParser(prog="aeflow")
    ingest_commands.register(root.add_subparsers(dest="command", required=True))

    def ingest(*extra: str) -> str:
        args = root.parse_args(["ingest", "--config", str(config), "--csv", str(csv), *extra])
        assert args.handler(args) == 0
        return capsys.readouterr().out

    out = ingest("--batch-rows", "2", "--start-date", "2026-02-01", "--cadence", "weekly")
    batches = sorted(p.name for p in (tmp_path / "root" / "incoming" / "adult").glob("*"))
    assert batches == [
        "prod-2026-02-01.parquet", "prod-2026-02-08.parquet", "prod-2026-02-15.parquet"
    ]  # fmt: skip
    assert "note:" not in out
    assert "carry no date" in ingest("--batch-rows", "5", "--name", "undated")
    with pytest.raises(ValueError, match="--cadence dates batches from --start-date"):
        ingest("--cadence", "daily")


def test_row_batches_are_named_by_a_start_date_and_a_cadence(tmp_path):
    csv = tmp_path / "credit.csv"
    csv.write_text("id,amount\n" + "".join(f"e{i},{i}\n" for i in range(7)))

    def names(chunk_rows: int = 65_536, **kwargs) -> list[tuple[str, int]]:
        written = ingest_csv(
            str(csv), storage=Storage(str(tmp_path / f"{len(kwargs)}-{chunk_rows}"), "ds"), fmt=CsvFormat(),
            columns=cols("id", None, ["amount"]), batching=Batching(batch_rows=3, **kwargs),
            chunk_rows=chunk_rows,
        )  # fmt: skip
        return [(b["batch_id"], b["rows"]) for b in written]

    assert names(start_date="2026-01-30") == [
        ("credit-2026-01-30", 3),
        ("credit-2026-01-31", 3),
        ("credit-2026-02-01", 1),
    ]
    assert [n for n, _ in names(start_date="2026-01-31", cadence="monthly", name="g")] == [
        "g-2026-01-31",
        "g-2026-02-28",  # the month's last day when it has no 31st
        "g-2026-03-31",
    ]
    assert [
        n for n, _ in names(start_date="2026-01-05", cadence="weekly", name="w", chunk_rows=2)
    ] == [
        "w-2026-01-05",
        "w-2026-01-12",
        "w-2026-01-19",
    ]
    with pytest.raises(ValueError, match="start_date must be a date YYYY-MM-DD"):
        names(start_date="Jan 5")
    with pytest.raises(ValueError, match="cadence must be one of"):
        names(start_date="2026-01-05", cadence="hourly")


def test_split_by_day_and_week_from_the_timestamp_in_any_row_order(tmp_path, monkeypatch):
    """More days than open writers, rows out of order: each day still becomes one file."""
    from tasks import ingest_staging

    monkeypatch.setattr(ingest_staging, "MAX_OPEN_WRITERS", 3)
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=d) for d in range(10)]
    order = [days[i % 10] for i in (0, 7, 3, 9, 1, 5, 2, 8, 4, 6) * 2]
    csv = tmp_path / "events.csv"
    csv.write_text(
        "id,ts,amount\n" + "".join(f"e{i},{d}T10:00:00,{i}\n" for i, d in enumerate(order))
    )
    written = ingest_csv(
        str(csv), storage=Storage(str(tmp_path / "day"), "ds"), fmt=CsvFormat(),
        columns=cols("id", "ts", ["amount"]), batching=Batching(split_by="day"), chunk_rows=3,
    )  # fmt: skip
    assert [(b["batch_id"], b["rows"]) for b in written] == [(f"events-{d}", 2) for d in days]
    assert sorted(
        p.name for p in Path(Storage(str(tmp_path / "day"), "ds").incoming).iterdir()
    ) == [f"events-{d}.parquet" for d in days]  # no staging or part files left behind
    second = pq.read_table(written[1]["path"]).column("id").to_pylist()
    assert second == ["e4", "e14"]  # the parts of a day are merged in reading order
    weeks = ingest_csv(
        str(csv), storage=Storage(str(tmp_path / "week"), "ds"), fmt=CsvFormat(),
        columns=cols("id", "ts", ["amount"]), batching=Batching(split_by="week"),
    )  # fmt: skip
    # 2026-01-01 is a Thursday: its ISO week starts on Monday 2025-12-29
    assert [(b["batch_id"], b["rows"]) for b in weeks] == [
        ("events-2025-12-29", 8),
        ("events-2026-01-05", 12),
    ]


def test_a_production_export_may_lack_the_label(tmp_path):
    """With a header the label is simply absent; without one, rows one field short are read
    without it (and without the dropped columns, when those are missing too)."""
    production = tmp_path / "adult.prod"
    production.write_text("41, Private, 1000, HS-grad\n42, ?, 2000, Masters\n")
    [table] = read_csv_tables(
        str(production), FORMAT, cols("row_id", None, ["age", "fnlwgt"], ["?"], label="income")
    )
    assert table.column_names == ["row_id", "age", "workclass", "fnlwgt"]
    assert table.column("age").to_pylist() == [41.0, 42.0]
    kdd = CsvFormat(
        header=False, column_names=("a", "b", "label", "difficulty"), drop_columns=("difficulty",)
    )
    two_short = tmp_path / "kdd.txt"
    two_short.write_text("1,tcp\n2,udp\n")
    [table] = read_csv_tables(str(two_short), kdd, cols("row_id", None, ["a"], label="label"))
    assert table.column_names == ["row_id", "a", "b"]
    headed = tmp_path / "prod.csv"
    headed.write_text("id,amount\nr1,3\n")
    fmt = CsvFormat(replace={"label": {"yes": "1"}})
    [table] = read_csv_tables(str(headed), fmt, cols("id", None, ["amount"], label="label"))
    assert table.column_names == ["id", "amount"]
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("1\n")  # two fields short of a, b, label: not an export without its label
    with pytest.raises(IngestError, match="cannot be parsed with 4 columns"):
        list(read_csv_tables(str(wrong), kdd, cols("row_id", None, ["a"], label="label")))


# ------------------------------------------------------------------------- the real datasets
def test_adult_test_labels_lose_their_dots(shared_datasets, tmp_path):
    cfg = load_config(REPO_ROOT / "configs" / "adult.toml")
    tables = list(
        read_csv_tables(
            str(shared_datasets / "adult" / "adult.test"),
            csv_format(cfg),
            cols(cfg.columns.id, cfg.columns.timestamp, cfg.columns.numeric),
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
        storage=Storage(str(tmp_path), "ds"),
        fmt=csv_format(cfg),
        columns=cols(cfg.columns.id, cfg.columns.timestamp, cfg.columns.numeric),
        batching=Batching(split_by="month"),
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
        cols(cfg.columns.id, None, cfg.columns.numeric),
    )
    assert "difficulty" not in table.column_names and len(table.column_names) == 43
    assert table.schema.field("src_bytes").type == pa.float64()


def test_a_bom_and_quoted_newlines_survive_any_chunking(tmp_path):
    # Excel's "CSV UTF-8" starts with a byte-order mark: it must not become part of the first
    # column's name (ingest then generated ids of its own beside a '\ufeffid' column). A quoted
    # value may hold newlines, blank lines, the separator and doubled quotes; a quote inside an
    # unquoted value is literal; a record is never split between two chunks, and rows are
    # counted as records, not lines.
    csv = tmp_path / "export.csv"
    csv.write_bytes(
        "\ufeffid;amount;note\n"
        'r1;1.5;plain\nr2;2;"two\nlines"\nr3;3;"blank\n\nline; and ""quotes"""\n'
        'r4;4;12" pizza\nr5;5;last\n'.encode()
    )
    notes = ["plain", "two\nlines", 'blank\n\nline; and "quotes"', '12" pizza', "last"]
    for chunk_rows in (1, 2, 1000):
        table = pa.concat_tables(
            read_csv_tables(
                str(csv), CsvFormat(separator=";"), cols("id", None, ["amount"]),
                chunk_rows=chunk_rows,
            )
        )  # fmt: skip
        assert table.column_names == ["id", "amount", "note"]
        assert table.column("id").to_pylist() == ["r1", "r2", "r3", "r4", "r5"]
        assert table.column("amount").to_pylist() == [1.5, 2.0, 3.0, 4.0, 5.0]
        assert table.column("note").to_pylist() == notes
    csv.write_bytes(csv.read_bytes().replace(b"r4;4;", b"r4;four;"))
    with pytest.raises(IngestError, match=r"data row 4, column 'amount': 'four'"):
        list(read_csv_tables(str(csv), CsvFormat(separator=";"), cols("id", None, ["amount"])))


def test_numbers_with_a_decimal_comma_and_thousands_separators_are_read(tmp_path):
    # A German export writes 12.345,67; an American one 12,345.67 in quotes. Both stopped ingest
    # ("is not a number") with no way in the config to read them.
    csv = tmp_path / "de.csv"
    csv.write_text("id;Betrag\nr1;12.345,67\nr2;-0,5\nr3;\nr4;1.000.000\n")
    fmt = CsvFormat(separator=";", decimal=",", thousands=".")
    table = pa.concat_tables(read_csv_tables(str(csv), fmt, cols("id", None, ["Betrag"])))
    assert table.column("Betrag").to_pylist() == [12345.67, -0.5, None, 1000000.0]
    csv.write_text('id,amount\nr1,"12,345.67"\nr2,0.5\n')
    fmt = CsvFormat(thousands=",")
    table = pa.concat_tables(read_csv_tables(str(csv), fmt, cols("id", None, ["amount"])))
    assert table.column("amount").to_pylist() == [12345.67, 0.5]
    with pytest.raises(IngestError, match=r"'12,345.67' is not a number.*ingest.thousands"):
        list(read_csv_tables(str(csv), CsvFormat(), cols("id", None, ["amount"])))
    with pytest.raises(ValueError, match="decimal and thousands separators must differ"):
        CsvFormat(decimal=",", thousands=",")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'dataset = "de"\n[columns]\nid = "id"\nnumeric = ["Betrag"]\n[validation]\n'
        'suite = "s.json"\n[ingest]\nseparator = ";"\ndecimal = ","\nthousands = "."\n'
    )
    assert csv_format(load_config(cfg)) == CsvFormat(separator=";", decimal=",", thousands=".")


def test_timestamps_with_and_without_an_offset_mix_and_a_bad_one_is_named(tmp_path):
    # One export held local times with their offset and some without (taken as UTC): ingest
    # stopped saying the ISO-8601 value '2026-05-01T10:00:00+02:00' was "not ISO-8601".
    csv = tmp_path / "mixed.csv"
    csv.write_text(
        "id,ts,x\na,2026-05-01 10:00:00,1\nb,2026-05-01T10:00:00+02:00,2\nc,,3\n"
        "d,2026-05-01T23:30Z,4\ne,2026-05-02,5\n"
    )
    columns = cols("id", "ts", ["x"])
    table = pa.concat_tables(read_csv_tables(str(csv), CsvFormat(), columns))
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert [v and v.isoformat() for v in table.column("ts").to_pylist()] == [
        "2026-05-01T10:00:00+00:00",
        "2026-05-01T08:00:00+00:00",
        None,
        "2026-05-01T23:30:00+00:00",
        "2026-05-02T00:00:00+00:00",
    ]
    csv.write_text(csv.read_text() + "f,01/05/2026 10:00,6\n")
    with pytest.raises(IngestError, match=r"data row 6, column 'ts': '01/05/2026 10:00' is not"):
        list(read_csv_tables(str(csv), CsvFormat(), columns))


def test_a_file_in_another_encoding_is_named_and_read_with_ingest_encoding(tmp_path):
    # A Latin-1 export stopped ingest with "'utf-8' codec can't decode byte 0xf6 in position 5"
    # (no file, no line, no fix).
    csv = tmp_path / "latin1.csv"
    csv.write_bytes("id;Größe;Stadt\nr1;1,5;München\nr2;2;Köln\n".encode("latin-1"))
    columns = ColumnsSettings(id="id", numeric=["Größe"], categorical=["Stadt"])
    with pytest.raises(IngestError, match=r"latin1.csv line 1 is not UTF-8.*ingest.encoding"):
        list(read_csv_tables(str(csv), CsvFormat(separator=";", decimal=","), columns))
    fmt = CsvFormat(separator=";", decimal=",", encoding="latin-1")
    table = pa.concat_tables(read_csv_tables(str(csv), fmt, columns))
    assert table.column_names == ["id", "Größe", "Stadt"]
    assert table.column("Stadt").to_pylist() == ["München", "Köln"]
    with pytest.raises(ValueError, match="unknown encoding 'latin-9000'"):
        CsvFormat(encoding="latin-9000")
    # Excel's "Unicode text": UTF-16 with its byte-order mark, tab-separated
    csv.write_bytes("id\tGröße\tStadt\r\nr1\t1,5\tMünchen\r\n".encode("utf-16"))
    fmt = CsvFormat(separator="\t", decimal=",", encoding="utf-16")
    table = pa.concat_tables(read_csv_tables(str(csv), fmt, columns))
    assert table.to_pylist() == [{"id": "r1", "Größe": 1.5, "Stadt": "München"}]
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'dataset = "de"\n[columns]\nid = "id"\nnumeric = ["x"]\n[validation]\nsuite = "s.json"\n'
        '[ingest]\nencoding = "latin-9000"\n'
    )
    with pytest.raises(ValueError, match=r"ingest.encoding.*unknown encoding 'latin-9000'"):
        load_config(cfg)


def test_a_trailing_separator_adds_no_nameless_column(tmp_path):
    # 'id;x;city;' (a trailing separator, common in ERP exports) made a column named '' in every
    # batch, which the suite and the model then carried; a nameless column with values is named.
    csv = tmp_path / "trailing.csv"
    csv.write_text("id;x;city;\r\nr1;1;a;\r\nr2;2;b;\r\n")
    columns = cols("id", None, ["x"])
    table = pa.concat_tables(read_csv_tables(str(csv), CsvFormat(separator=";"), columns))
    assert table.column_names == ["id", "x", "city"] and table.num_rows == 2
    csv.write_text("id;x;city;\nr1;1;a;\nr2;2;b;oops\n")
    with pytest.raises(IngestError, match=r"data row 2: column 4 has no name but a value, 'oops'"):
        list(read_csv_tables(str(csv), CsvFormat(separator=";"), columns))


def test_a_row_without_a_timestamp_is_named_when_splitting_by_period(tmp_path):
    csv = tmp_path / "nullts.csv"
    csv.write_text(
        "id,ts,x\na,2026-05-01T10:00:00Z,1\nb,2026-05-01T11:00:00Z,2\nc,,3\nd,2026-05-02,4\n"
    )
    with pytest.raises(
        IngestError, match=r"data row 3 has no .ts. \(the first such row\).*--batch-rows"
    ):
        ingest_csv(
            str(csv), storage=Storage(str(tmp_path), "ds"), fmt=CsvFormat(),
            columns=cols("id", "ts", ["x"]), batching=Batching(split_by="day"), chunk_rows=2,
        )  # fmt: skip


def test_an_ingest_killed_half_way_leaves_no_staging_behind_the_next_one(tmp_path):
    """A SIGKILLed ingest cannot remove its hidden staging folder; the next ingest on the machine
    removes it once its process is gone (a live ingest's folder is left alone)."""
    import os
    import subprocess
    import sys

    from tasks.ingest_staging import staging_token

    storage = Storage(str(tmp_path), "ds")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)  # fmt: skip
    live_token = staging_token()  # this process: alive
    dead_token = staging_token().replace(f"-{os.getpid()}-", f"-{int(dead.stdout)}-")
    for token in (live_token, dead_token):
        part = Path(storage.ingest_staging(token, "events-0001", 0))
        part.parent.mkdir(parents=True)
        part.write_bytes(b"half a Parquet file")
    csv = tmp_path / "events.csv"
    csv.write_text("id,amount\ne1,1\n")
    ingest_csv(str(csv), storage=storage, fmt=CsvFormat(), columns=cols("id", None, ["amount"]))
    left = sorted(p.name for p in Path(storage.incoming).iterdir())
    assert left == sorted([f"_ingest-{live_token}", "events.parquet"])
