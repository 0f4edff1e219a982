"""The committed suites on the real datasets (../shared/datasets; skipped when absent).

NSL-KDD: drafted from KDDTrain+_20Percent, KDDTest+ is scored with a warning for its unseen
`service` level. Adult: drafted from adult.data, adult.test passes once its label dots are handled
by the config. Bank: drafted from the first three months of bank-full, which pass.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from flows.commands.expectations import read_reference
from flows.commands.ingest import csv_format
from flows.config import load_config
from tasks.ingest import ingest_csv, read_csv_tables
from tasks.io import BatchRef
from tasks.validation import (
    DraftSettings,
    ValidationOutcome,
    draft_suite,
    suite_json,
    validate_batch,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def config(name: str):
    return load_config(REPO_ROOT / "configs" / f"{name}.toml")


def as_batch(cfg, csv: Path, folder: Path, fmt=None) -> BatchRef:
    """The CSV ingested as one batch, exactly as `aeflow ingest` writes it."""
    [written] = ingest_csv(
        str(csv),
        incoming=str(folder),
        fmt=fmt or csv_format(cfg),
        columns=cfg.columns.model_copy(update={"missing_values": [], "label": None}),
    )
    path = Path(written["path"])
    return BatchRef(written["batch_id"], str(path), path.stat().st_size)


def validate(cfg, batch: BatchRef) -> ValidationOutcome:
    return validate_batch(
        batch, columns=cfg.columns, validation=cfg.validation, options=cfg.storage.options
    )


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("nslkdd", "nslkdd/KDDTrain+_20Percent.txt"),
        ("adult", "adult/adult.data"),
    ],
)
def test_committed_suites_are_what_init_drafts(shared_datasets, name, reference):
    cfg = config(name)
    cols = cfg.columns
    table = read_reference(cfg, [str(shared_datasets / reference)])
    drafted = draft_suite(
        table,
        name=cfg.dataset,
        columns=cols,
        references=[str(shared_datasets / reference)],
        settings=DraftSettings(),
    )
    assert suite_json(drafted) == Path(cfg.suite_path).read_text()


def test_nsl_kdd_train_passes_and_test_is_scored_with_the_unseen_service(shared_datasets, tmp_path):
    cfg = config("nslkdd")
    train = validate(
        cfg,
        as_batch(cfg, shared_datasets / "nslkdd" / "KDDTrain+_20Percent.txt", tmp_path / "train"),
    )
    assert (train.status, train.rows) == ("passed", 25192), train.reason

    test = validate(
        cfg, as_batch(cfg, shared_datasets / "nslkdd" / "KDDTest+.txt", tmp_path / "test")
    )
    assert (test.status, test.accepted, test.critical, test.rows) == ("warning", True, [], 22544)
    [service] = [
        w
        for w in test.warnings
        if w["type"] == "expect_column_values_to_be_in_set" and w["column"] == "service"
    ]
    assert service["sample_values"] == ["tftp_u"] and service["unexpected_count"] == 1
    assert service["sample_ids"] and service["sample_ids"][0].startswith("KDDTest-")


def test_adult_test_passes_once_its_label_dots_are_handled(shared_datasets, tmp_path):
    cfg = config("adult")
    data = validate(cfg, as_batch(cfg, shared_datasets / "adult" / "adult.data", tmp_path / "d"))
    assert (data.status, data.rows) == ("passed", 32561), data.reason
    test = validate(cfg, as_batch(cfg, shared_datasets / "adult" / "adult.test", tmp_path / "t"))
    assert (test.status, test.rows) == ("passed", 16281), test.reason

    # The quirk is real: without the config's rewrite the labels are new levels.
    raw = dataclasses.replace(csv_format(cfg), replace={})
    quirky = validate(
        cfg, as_batch(cfg, shared_datasets / "adult" / "adult.test", tmp_path / "raw", raw)
    )
    [labels] = [w for w in quirky.warnings if w["column"] == "income"]
    assert labels["unexpected_count"] == 16281 and "<=50K." in labels["sample_values"]


def test_bank_first_three_months_pass_their_own_suite(shared_datasets, tmp_path):
    cfg = config("bank")
    tables = read_csv_tables(
        str(shared_datasets / "bank_marketing" / "bank-full.csv"),
        csv_format(cfg),
        cfg.columns.model_copy(update={"missing_values": [], "label": None}),
    )
    table = pa.concat_tables(tables)
    months = pc.strftime(table.column(cfg.columns.timestamp), format="%Y-%m")
    first = table.filter(pc.is_in(months, pa.array(["2008-05", "2008-06", "2008-07"])))
    path = tmp_path / "bank-2008-q2.parquet"
    pq.write_table(first, path)
    outcome = validate(cfg, BatchRef("bank-2008-q2", str(path), path.stat().st_size))
    assert (outcome.status, outcome.rows) == ("passed", 18823), outcome.reason
