"""A team's first week with its own table, through the installed `aeflow` command.

The table has no timestamp column and its production exports have no label. The week:
CSV exports -> `aeflow ingest` into dated batches -> `expectations init` and `check` -> `train`
-> `score` (the unlabelled production batches too) -> the next day's export -> `nightly --date D`
scores D's batch and measures its drift -> `retrain --until D` on the window of accepted batches
-> `backfill --from --to` re-scores the production days. Every partition, marker and window uses
the batches' dates (from their ids), never the day they were scored.

Two tables: generated card transactions (here, always run) and UCI Adult (test_first_week_adult.py,
skipped when ../shared/datasets is absent), both small and trained for a few epochs. The story and
its checks are in tests/first_week_support.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from first_week_support import HISTORY_DAYS, QUICK, ROWS, Week, assert_the_week, run_week

from tasks.demo_data import LABEL_COLUMN, TIMESTAMP_COLUMN, generate_demo_data

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


def generated_week(workdir: Path) -> Week:
    """Card transactions exported without their event time; production without the label."""
    manifest = generate_demo_data(
        workdir / "source", days=6, rows_per_day=ROWS, seed=5, drift_day=None, malformed_day=None
    )
    data = tomllib.loads((REPO_ROOT / "configs" / "demo.toml").read_text())
    columns = {k: v for k, v in data["columns"].items() if k != "timestamp"}
    columns["label_positive"] = ["1"]  # the label reads back from CSV as text
    config = {
        **data,
        "dataset": "shop",
        "storage": {"root": "data"},
        "columns": columns,
        "validation": {"suite": "shop.json", "on_warning": "score"},
        **QUICK,
    }

    def export(index: int, folder: Path) -> Path:
        if index < 0:  # the history: the first days in one file, labelled
            table = pa.concat_tables(pq.read_table(p) for p in manifest.paths[:HISTORY_DAYS])
            path = folder / "history.csv"
        else:
            table = pq.read_table(manifest.paths[index]).drop_columns([LABEL_COLUMN])
            path = folder / f"export-{index}.csv"
        pacsv.write_csv(table.drop_columns([TIMESTAMP_COLUMN]), path)
        return path

    return Week("shop", config, export, dt.date(2026, 3, 2))


def test_a_first_week_on_generated_data(tmp_path, prefect_api):
    out = run_week(generated_week(tmp_path), tmp_path, prefect_api)
    assert_the_week(out, "shop")
    aeflow, config = out["aeflow"], str(out["config"])

    # a typo in the config is a config error, and incoming/ is left as it was
    incoming = out["root"] / "incoming" / "shop"
    before = sorted(p.name for p in incoming.iterdir())
    typo = out["config"].with_name("typo.yaml")
    typo.write_text(out["config"].read_text().replace("- merchant_risk_score", "- merchant_risk"))
    failed = aeflow("score", "--config", str(typo), "--force", expect=2)
    assert failed.stderr.startswith("aeflow: error: ")
    assert "columns.numeric names ['merchant_risk']" in failed.stderr
    assert "did you mean 'merchant_risk_score'?" in failed.stderr
    assert "no batch was read or moved" in failed.stderr and "Traceback" not in failed.stderr
    assert sorted(p.name for p in incoming.iterdir()) == before
    assert not (out["root"] / "quarantine").exists()

    # a retraining with nothing in its window is skipped, says why, and is not an error
    skipped = aeflow("retrain", "--config", config, "--until", "2025-06-30")
    assert (
        "retraining        skipped, nothing to retrain on: no batch dated 2025-06-21..2025-06-30"
        in (skipped.stdout)
    )
    # logged at INFO, not as a warning (the test runs at PREFECT_LOGGING_LEVEL=WARNING)
    assert "retraining skipped" not in skipped.stderr and "Traceback" not in skipped.stderr

    # a broken export is quarantined; --fail-on-quarantine turns that into exit 3
    broken = tmp_path / "exports" / "broken.csv"
    rows = list(csv.reader((tmp_path / "exports" / "export-5.csv").open()))
    header = rows[0]
    with broken.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([c for c in header if c != "merchant_category"])
        position = header.index("merchant_category")
        writer.writerows([r[:position] + r[position + 1 :] for r in rows[1:]])
    aeflow("ingest", "--config", config, "--csv", str(broken), "--name", "late", "--start-date",
           "2026-03-09")  # fmt: skip
    night = aeflow("nightly", "--config", config, "--date", "2026-03-09", "--fail-on-quarantine",
                   expect=3)  # fmt: skip
    assert "0 scored, 0 already scored (skipped), 1 quarantined" in night.stdout
    assert "missing column(s) ['merchant_category']" in night.stdout
    assert "1 batch(es) quarantined; exit 3 (--fail-on-quarantine)" in night.stderr
