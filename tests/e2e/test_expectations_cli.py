"""`aeflow expectations|ingest|quarantine` as a user runs them (the installed console script)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

AEFLOW = shutil.which("aeflow", path=os.path.dirname(sys.executable)) or shutil.which("aeflow")
REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert AEFLOW, "the aeflow console script is not installed in this environment"
    return subprocess.run([AEFLOW, *args], capture_output=True, text=True, timeout=300)


def private_config(name: str, tmp_path: Path) -> Path:
    """The repo's config for `name` with its storage root and suite moved into tmp_path."""
    text = (REPO_ROOT / "configs" / f"{name}.toml").read_text()
    text = text.replace('root = "../data"', 'root = "root"')
    text = text.replace(f'suite = "../expectations/{name}.json"', f'suite = "{name}.json"')
    config = tmp_path / f"{name}.toml"
    config.write_text(text)
    return config


def test_init_drafts_a_suite_that_check_accepts_and_an_unknown_type_is_an_error(tmp_path):
    data = tmp_path / "days"
    made = run("demo-data", "--out", str(data), "--days", "3", "--rows-per-day", "1500")
    assert made.returncode == 0, made.stderr
    config = private_config("demo", tmp_path)
    reference = str(data / "2026-01-01.parquet")

    drafted = run("expectations", "init", "--config", str(config), "--reference", reference)
    assert drafted.returncode == 0, drafted.stderr
    assert "the reference passes it" in drafted.stdout
    suite = tmp_path / "demo.json"
    assert json.loads(suite.read_text())["name"] == "demo"

    again = run("expectations", "init", "--config", str(config), "--reference", reference)
    assert again.returncode == 2 and "pass --force to overwrite" in again.stderr
    assert "Traceback" not in again.stderr

    checked = run("expectations", "check", "--config", str(config))
    assert checked.returncode == 0 and "OK, " in checked.stdout

    document = json.loads(suite.read_text())
    document["expectations"].append(
        {"type": "expect_column_values_to_be_sparkly", "kwargs": {"column": "amount"}}
    )
    suite.write_text(json.dumps(document))
    broken = run("expectations", "check", "--config", str(config))
    assert broken.returncode == 1
    assert "expect_column_values_to_be_sparkly): unknown expectation type" in broken.stdout


def test_nsl_kdd_from_csv_to_a_suite_identical_to_the_committed_one(shared_datasets, tmp_path):
    config = private_config("nslkdd", tmp_path)
    nslkdd = shared_datasets / "nslkdd"
    ingested = run("ingest", "--config", str(config), "--csv", str(nslkdd / "KDDTest+.txt"))
    assert ingested.returncode == 0, ingested.stderr
    assert "ingested 22544 rows" in ingested.stdout
    assert (tmp_path / "root" / "incoming" / "nslkdd" / "KDDTest.parquet").is_file()

    drafted = run(
        "expectations",
        "init",
        "--config",
        str(config),
        "--reference",
        str(nslkdd / "KDDTrain+_20Percent.txt"),
    )
    assert drafted.returncode == 0, drafted.stdout + drafted.stderr
    committed = (REPO_ROOT / "expectations" / "nslkdd.json").read_text()
    assert (tmp_path / "nslkdd.json").read_text() == committed

    listed = run("quarantine", "list", "--config", str(config))
    assert listed.returncode == 0 and "no quarantined batches" in listed.stdout


def test_init_says_when_the_timestamp_column_cannot_date_batches(tmp_path):
    # Epoch seconds in the timestamp column were accepted without a word, and every batch was
    # then dated by its arrival (today), whatever days its rows belong to.
    import pyarrow as pa
    import pyarrow.parquet as pq

    reference = tmp_path / "2026-01-01.parquet"
    pq.write_table(
        pa.table({"id": ["a", "b"], "ts": [1767225600, 1767229200], "x": [1.0, 2.0]}), reference
    )
    config = tmp_path / "shop.toml"
    config.write_text(
        'dataset = "shop"\n[columns]\nid = "id"\ntimestamp = "ts"\nnumeric = ["x"]\n'
        '[validation]\nsuite = "shop.json"\n'
    )
    drafted = run("expectations", "init", "--config", str(config), "--reference", str(reference))
    assert drafted.returncode == 0, drafted.stderr
    assert (
        "columns.timestamp 'ts' is int64 in the reference, not a date/time: it cannot date "
        "batches" in drafted.stdout
    ), drafted.stdout
