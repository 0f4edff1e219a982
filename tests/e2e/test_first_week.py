"""A team's first week with its own table, through the installed `aeflow` command.

The table has no timestamp column and its production exports have no label. The week:
CSV exports -> `aeflow ingest` into dated batches -> `expectations init` and `check` -> `train`
-> `score` (the unlabelled production batches too) -> the next day's export -> `nightly --date D`
scores D's batch and measures its drift -> `retrain --until D` on the window of accepted batches
-> `backfill --from --to` re-scores the production days. Every partition, marker and window uses
the batches' dates (from their ids), never the day they were scored.

Two tables: generated card transactions (always run) and UCI Adult (../shared/datasets, skipped
when absent), both small and trained for a few epochs so the week takes about a minute each.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from subprocess_support import AEFLOW

from tasks.demo_data import LABEL_COLUMN, TIMESTAMP_COLUMN, generate_demo_data

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICK = {
    "model": {"epochs": 4, "hidden_sizes": [32], "latent_dim": 4},
    "evaluation": {"baselines": False, "report": False},
    "training": {"window_days": 10},
}
HISTORY_DAYS = 3  # days of labelled history; three unlabelled production days follow
ROWS = 300  # rows per daily batch


@dataclass
class Week:
    """What a team brings: a config and a function writing day ``i``'s CSV export."""

    name: str
    config: dict
    export: Callable[[int, Path], Path]  # (day index, folder) -> the CSV of that day
    first_day: dt.date


def runner(workdir: Path, api: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(workdir / "prefect-home"),
        "GX_ANALYTICS_ENABLED": "false",
        "COLUMNS": "200",
    }

    def aeflow(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        assert AEFLOW, "the aeflow console script is not installed in this environment"
        result = subprocess.run(
            [AEFLOW, *args], capture_output=True, text=True, cwd=workdir, env=env, timeout=600
        )
        assert result.returncode == expect, (
            f"aeflow {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
        return result

    return aeflow


def run_week(week: Week, workdir: Path, api: str) -> dict:
    """The week through the CLI; returns the outputs and paths the tests look at."""
    aeflow = runner(workdir, api)
    config = workdir / f"{week.name}.yaml"
    config.write_text(yaml.safe_dump(week.config))
    exports = workdir / "exports"
    exports.mkdir()
    day = [(week.first_day + dt.timedelta(days=i)).isoformat() for i in range(6)]
    ingest = ["ingest", "--config", str(config), "--name", week.name]
    out: dict = {"config": config, "root": workdir / "data", "days": day, "aeflow": aeflow}

    # Monday: the labelled history, one CSV, split into daily batches named by date.
    history = week.export(-1, exports)
    out["ingest_history"] = aeflow(
        *ingest, "--csv", str(history), "--batch-rows", str(ROWS), "--start-date", day[0]
    ).stdout
    incoming = out["root"] / "incoming" / week.name
    references = [str(incoming / f"{week.name}-{d}.parquet") for d in day[:HISTORY_DAYS]]
    out["init"] = aeflow(
        "expectations", "init", "--config", str(config),
        *[arg for r in references for arg in ("--reference", r)],
    ).stdout  # fmt: skip
    out["check"] = aeflow("expectations", "check", "--config", str(config)).stdout
    out["train"] = aeflow("train", "--config", str(config), "--until", day[HISTORY_DAYS - 1]).stdout
    # Production exports arrive without the label, one a day.
    for i in (3, 4):
        aeflow(*ingest, "--csv", str(week.export(i, exports)), "--start-date", day[i])
    out["score"] = aeflow("score", "--config", str(config)).stdout
    aeflow(*ingest, "--csv", str(week.export(5, exports)), "--start-date", day[5])
    out["nightly"] = aeflow(
        "nightly", "--config", str(config), "--date", day[5], "--no-retrain"
    ).stdout
    out["retrain"] = aeflow("retrain", "--config", str(config), "--until", day[5]).stdout
    out["backfill"] = aeflow(
        "backfill", "--config", str(config), "--from", day[3], "--to", day[5], "--force"
    ).stdout
    return out


def assert_the_week(out: dict, name: str) -> None:
    day, root = out["days"], out["root"]
    for d in day[:HISTORY_DAYS]:
        assert f"{name}-{d}" in out["ingest_history"]
    assert "every reference batch passes it" in out["init"]
    assert ": OK, " in out["check"]
    assert "(champion)" in out["train"]
    assert f"from {HISTORY_DAYS} batches" in out["train"]
    # the unlabelled production batches pass the contract and are scored
    assert "5 scored, 0 already scored (skipped), 0 quarantined" in out["score"]
    assert "1 scored, 0 already scored (skipped), 0 quarantined" in out["nightly"]
    assert f"drift             {name}-{day[5]}: " in out["nightly"]
    # partitions and markers carry the batches' dates, not the day they were scored
    partitions = sorted(p.name for p in (root / "scored" / name).glob("date=*"))
    assert partitions == [f"date={d}" for d in day]
    for d in day:
        assert (root / "scored" / name / f"date={d}" / f"{name}-{d}.parquet").is_file()
        marker = json.loads((root / "scored" / name / "_success" / f"{name}-{d}.json").read_text())
        assert (marker["date"], marker["date_source"]) == (d, "id")
    # the retraining window is the six accepted days up to D, half of them labelled
    assert f"of 6 accepted batches ({day[0]}..{day[5]})" in out["retrain"]
    assert "is in 3 of 6 batches of the window: evaluated without labels" in out["retrain"]
    record = next(line for line in out["retrain"].splitlines() if line.startswith("record"))
    window = json.loads(Path(record.split(maxsplit=1)[1]).read_text())["window"]
    assert window["batches"] == [f"{name}-{d}" for d in day]
    assert f"backfill          {day[3]}..{day[5]}" in out["backfill"]
    assert "3 scored, 0 already scored (skipped), 0 quarantined" in out["backfill"]
    assert sorted(p.name for p in (root / "scored" / name).glob("date=*")) == partitions


# ------------------------------------------------------------------------------ generated
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


# ---------------------------------------------------------------------------------- adult
def adult_week(datasets: Path) -> Week:
    """UCI Adult: headerless, ', '-separated, no timestamp; production lines lack `income`."""
    data = tomllib.loads((REPO_ROOT / "configs" / "adult.toml").read_text())
    config = {**data, "storage": {"root": "data"}, "validation": {"suite": "adult.json"}, **QUICK}
    train_lines = (datasets / "adult" / "adult.data").read_text().splitlines()
    test_lines = [
        line for line in (datasets / "adult" / "adult.test").read_text().splitlines()[1:] if line
    ]

    def export(index: int, folder: Path) -> Path:
        if index < 0:
            path, lines = folder / "adult-history.data", train_lines[: HISTORY_DAYS * ROWS]
        else:
            start = (index - HISTORY_DAYS) * ROWS
            # the production export: the same layout without its last field, the label
            lines = [line.rsplit(",", 1)[0] for line in test_lines[start : start + ROWS]]
            path = folder / f"adult-export-{index}.data"
        path.write_text("\n".join(lines) + "\n")
        return path

    return Week("adult", config, export, dt.date(2026, 1, 5))


def test_a_first_week_on_adult(tmp_path, prefect_api, shared_datasets):
    out = run_week(adult_week(shared_datasets), tmp_path, prefect_api)
    assert_the_week(out, "adult")
