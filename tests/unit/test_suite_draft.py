"""Drafted suites that can fail and do not always fail: per-batch statistics with several
references, and no expectation that no batch could fail."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.commands import expectations as expectations_commands
from tasks.io import BatchRef
from tasks.settings import ColumnsSettings, ValidationSettings
from tasks.validation import cannot_fail, draft_suite, suite_json, validate_batch

NUMERIC = ["amount", "visits"]
CATEGORICAL = ["channel"]
COLUMNS = ColumnsSettings(id="tx_id", numeric=NUMERIC, categorical=CATEGORICAL)


def batch(seed: int, rows: int = 200, shift: float = 0.0, web: float = 0.5) -> pa.Table:
    """A small batch; ``shift`` moves the amounts, ``web`` is the share of the web channel."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "tx_id": [f"t{seed}-{i}" for i in range(rows)],
            "amount": rng.normal(100 + shift, 10, rows),
            "visits": pa.array(rng.poisson(4, rows), type=pa.int64()),
            "channel": rng.choice(["web", "app"], rows, p=[web, 1 - web]),
        }
    )


def draft(tables, **kwargs) -> dict:
    return draft_suite(tables, name="shop", columns=COLUMNS, **kwargs)


def by_type(suite: dict, kind: str, column: str | None = None) -> list[dict]:
    return [
        e
        for e in suite["expectations"]
        if e["type"] == kind and (column is None or e["kwargs"].get("column") == column)
    ]


def validate(table: pa.Table, suite: dict, folder: Path, name: str) -> str:
    suite_path = folder / "suite.json"
    suite_path.write_text(suite_json(suite))
    path = folder / f"{name}.parquet"
    pq.write_table(table, path)
    outcome = validate_batch(
        BatchRef(name, str(path), path.stat().st_size),
        columns=COLUMNS,
        validation=ValidationSettings(suite=str(suite_path)),
    )
    return outcome.status if outcome.status != "quarantined" else outcome.reason


def test_row_count_bounds_come_from_each_batch_not_their_sum():
    one = by_type(draft(batch(0)), "expect_table_row_count_to_be_between")[1]["kwargs"]
    three = draft([batch(1), batch(2), batch(3)])
    bounds = by_type(three, "expect_table_row_count_to_be_between")[1]["kwargs"]
    assert (one["min_value"], one["max_value"]) == (40, 1000)
    assert (bounds["min_value"], bounds["max_value"]) == (40, 1000)  # not 120-3000
    uneven = draft([batch(1, rows=100), batch(2, rows=300)])
    bounds = by_type(uneven, "expect_table_row_count_to_be_between")[1]["kwargs"]
    assert (bounds["min_value"], bounds["max_value"]) == (20, 1500)
    assert three["meta"]["aeflow"]["reference_batch_rows"] == [200, 200, 200]


def test_every_reference_batch_passes_a_suite_drafted_from_several(tmp_path):
    """Batches whose distributions differ: pooled quantiles +- a margin fail the outer ones, and
    pooled level shares are far from each batch's; per-batch statistics keep each inside."""
    references = [
        batch(1, shift=-25, web=0.2),
        batch(2, shift=0, web=0.5),
        batch(3, shift=25, web=0.8),
    ]
    suite = draft(references)
    for position, reference in enumerate(references):
        assert validate(reference, suite, tmp_path, f"ref{position}") == "passed"
    pooled = draft(pa.concat_tables(references))  # the old way: one table of every row
    assert validate(references[0], pooled, tmp_path, "pooled") != "passed"
    [kl] = by_type(suite, "expect_column_kl_divergence_to_be_less_than")
    assert kl["kwargs"]["threshold"] > 0.1 and "twice the largest" in kl["meta"]["why"]
    [quantiles] = by_type(suite, "expect_column_quantile_values_to_be_between", "amount")
    low, high = quantiles["kwargs"]["quantile_ranges"]["value_ranges"][2]  # the median
    assert low < 80 and high > 120  # spans the outer batches' medians (about 75 and 125)
    # the suite still catches a batch unlike every reference
    far = batch(9, shift=200, web=0.5)
    assert validate(far, suite, tmp_path, "far") == "warning"


def test_a_single_reference_drafts_as_before(tmp_path):
    reference = batch(4)
    suite = draft(reference)
    assert validate(reference, suite, tmp_path, "ref") == "passed"
    [kl] = by_type(suite, "expect_column_kl_divergence_to_be_less_than")
    assert kl["kwargs"]["threshold"] == 0.1
    assert "reference_batch_rows" not in suite["meta"]["aeflow"]


def test_expectations_no_batch_could_fail_are_left_out_and_listed():
    rows = 200
    table = batch(5, rows=rows).append_column(
        "note", pa.array([None] * rows, type=pa.string())
    ).append_column(
        "sparse", pa.array(["x" if i % 5 < 2 else None for i in range(rows)])
    ).append_column(
        "flag", pa.array([i % 2 == 0 for i in range(rows)])
    ).append_column(
        "level", pa.array([i % 100 - 50 for i in range(rows)], type=pa.int8())
    )  # fmt: skip
    columns = ColumnsSettings(
        id="tx_id", numeric=[*NUMERIC, "level"], categorical=[*CATEGORICAL, "flag"]
    )
    suite = draft_suite(table, name="shop", columns=columns, settings=None)
    for expectation in suite["expectations"]:
        assert cannot_fail(expectation, None) is None, expectation
    dropped = {(d["type"], d["column"]) for d in suite["meta"]["aeflow"]["dropped"]}
    # an all-null column: any share of nulls would pass
    assert ("expect_column_values_to_not_be_null", "note") in dropped
    # a boolean column: its two values are every value it can hold
    assert ("expect_column_values_to_be_in_set", "flag") in dropped
    assert not by_type(suite, "expect_column_values_to_not_be_null", "note")
    # 60% empty: the warning can still fail (before, 2 x 0.6 + 0.01 > 1 gave mostly 0.0)
    [sparse] = by_type(suite, "expect_column_values_to_not_be_null", "sparse")
    assert sparse["kwargs"]["mostly"] == pytest.approx(0.2, abs=1e-3)
    # int8 whose widened range stays inside [-128, 127] is kept: it can fail
    assert by_type(suite, "expect_column_values_to_be_between", "level")


def test_cannot_fail_rules():
    int8, boolean = pa.int8(), pa.bool_()
    between = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x"}}
    wide = {**between, "kwargs": {"min_value": -200, "max_value": 300}}
    assert "covers every value" in cannot_fail(wide, int8)
    assert cannot_fail(wide, pa.float64()) is None
    assert cannot_fail({**between, "kwargs": {"min_value": 0, "max_value": 300}}, int8) is None
    ranges = {"quantiles": [0.5], "value_ranges": [[0, 1]]}
    quantile = {
        "type": "expect_column_quantile_values_to_be_between",
        "kwargs": {"quantile_ranges": ranges},
    }
    assert cannot_fail(quantile, boolean) and cannot_fail(quantile, int8) is None
    kl = {
        "type": "expect_column_kl_divergence_to_be_less_than",
        "kwargs": {
            "partition_object": {"values": ["a", "b"], "weights": [0.5, 0.5]},
            "threshold": 5.0,
            "tail_weight_holdout": 0.01,
        },
    }
    assert "largest divergence" in cannot_fail(kl, None)
    assert cannot_fail({**kl, "kwargs": {**kl["kwargs"], "threshold": 0.1}}, None) is None


def test_init_drafts_from_several_references_and_checks_each(tmp_path, capsys):
    folder = tmp_path / "refs"
    folder.mkdir()
    paths = []
    for seed, shift in ((1, -25), (2, 0), (3, 25)):
        path = folder / f"2026-01-0{seed}.parquet"
        pq.write_table(batch(seed, shift=shift), path)
        paths.append(str(path))
    config = tmp_path / "shop.toml"
    config.write_text(
        'dataset = "shop"\n[columns]\nid = "tx_id"\nnumeric = ["amount", "visits"]\n'
        'categorical = ["channel"]\n[validation]\nsuite = "shop.json"\n'
    )
    root = argparse.ArgumentParser(prog="aeflow")
    expectations_commands.register(root.add_subparsers(dest="command", required=True))
    argv = ["expectations", "init", "--config", str(config)]
    args = root.parse_args([*argv, *[a for p in paths for a in ("--reference", p)]])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "from 600 rows in 3 reference batch(es)" in out
    assert "every reference batch passes it" in out
    suite = json.loads((tmp_path / "shop.json").read_text())
    assert suite["meta"]["aeflow"]["drafted_from"] == [Path(p).name for p in paths]


def test_references_that_differ_only_in_number_widths_draft_and_others_are_named(tmp_path):
    # A whole-number column without nulls in one export and with them in the next (int64, then
    # double) stopped init with "the references have different schemas", naming nothing.
    from flows.config import load_config

    config = tmp_path / "shop.toml"
    config.write_text(
        'dataset = "shop"\n[columns]\nid = "tx_id"\nnumeric = ["amount", "visits"]\n'
        'categorical = ["channel"]\n[validation]\nsuite = "shop.json"\n'
    )
    cfg = load_config(config)
    first, second = batch(1), batch(2)
    widened = second.set_column(2, "visits", second.column("visits").cast(pa.float64()))
    paths = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    pq.write_table(first, paths[0])
    pq.write_table(widened, paths[1])
    tables = expectations_commands.read_reference_batches(cfg, paths)
    assert [t.num_rows for t in tables] == [200, 200]
    retyped = second.set_column(3, "channel", pa.array(range(200)))
    pq.write_table(retyped, paths[1])
    with pytest.raises(ValueError, match=r"b.parquet: 'channel' is int64 \(string in a.parquet\)"):
        expectations_commands.read_reference_batches(cfg, paths)
