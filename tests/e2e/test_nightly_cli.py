"""`aeflow nightly` day by day over the demo data, as an operator runs it (subprocesses of the
installed console script, against a Prefect server on loopback).

The story: generate demo data, draft the data contract from the first days, train, then one
`aeflow nightly --date DAY` per day. The malformed day is quarantined, the drifted day is detected
and triggers a retrain whose challenger is promoted or kept with the reason printed, and every
valid batch is written exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from subprocess_support import AEFLOW

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
DAYS, ROWS_PER_DAY, TRAIN_DAYS = 5, 1000, 2
QUICK = {"model": {"epochs": 5}, "evaluation": {"baselines": False, "report": False}}


@pytest.fixture(scope="module")
def story(tmp_path_factory, prefect_api):
    workdir = tmp_path_factory.mktemp("operator")
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(workdir / "prefect-home"),
        "GX_ANALYTICS_ENABLED": "false",
        "COLUMNS": "200",
    }

    def aeflow(*args: str) -> subprocess.CompletedProcess[str]:
        assert AEFLOW, "the aeflow console script is not installed in this environment"
        result = subprocess.run(
            [AEFLOW, *args], capture_output=True, text=True, cwd=workdir, env=env, timeout=300
        )
        assert result.returncode == 0, f"aeflow {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    data = tomllib.loads((REPO_ROOT / "configs" / "demo.toml").read_text())
    data["storage"]["root"] = "data"
    data["validation"]["suite"] = "demo.json"
    for section, values in QUICK.items():
        data[section] = {**data.get(section, {}), **values}
    config = workdir / "demo.yaml"
    config.write_text(yaml.safe_dump(data))
    incoming = workdir / "data" / "incoming" / "demo"

    made = aeflow("demo-data", "--out", str(incoming), "--days", str(DAYS),
                  "--rows-per-day", str(ROWS_PER_DAY), "--seed", "2")  # fmt: skip
    manifest = json.loads(made.stdout)
    days = manifest["batch_ids"]
    references = [arg for p in manifest["paths"][:TRAIN_DAYS] for arg in ("--reference", p)]
    aeflow("expectations", "init", "--config", str(config), *references)
    trained = aeflow("train", "--config", str(config), "--until", days[TRAIN_DAYS - 1])
    nights = {day: aeflow("nightly", "--config", str(config), "--date", day).stdout for day in days}
    return {
        "aeflow": aeflow,
        "config": config,
        "root": workdir / "data",
        "days": days,
        "drifted": days[manifest["drift_day"]],
        "malformed": days[manifest["malformed_day"]],
        "trained": trained.stdout,
        "nights": nights,
    }


def test_the_malformed_day_is_quarantined(story):
    out = story["nights"][story["malformed"]]
    assert "0 scored, 0 already scored (skipped), 1 quarantined" in out
    assert f"quarantined       {story['malformed']}: " in out and "merchant_risk_score" in out
    assert (story["root"] / "quarantine" / "demo" / story["malformed"] / "report.md").is_file()


def test_the_drifted_day_triggers_a_retrain_that_is_promoted_or_kept_with_a_reason(story):
    out = story["nights"][story["drifted"]]
    assert f"drift             {story['drifted']}: drift (drifted columns: " in out
    assert f"retrain trigger   drift in {story['drifted']}: " in out
    assert "promoted to champion" in out or "kept as challenger (not promoted)" in out
    why = next(line for line in out.splitlines() if line.startswith("why"))
    assert "holdout reconstruction MSE" in why
    record = next(line for line in out.splitlines() if line.startswith("record"))
    stored = json.loads(Path(record.split(maxsplit=1)[1]).read_text())
    assert stored["trigger"] == "drift" and stored["reason"] in why
    quiet = [d for d in story["days"] if d not in (story["drifted"], story["malformed"])]
    for day in quiet:
        assert "retrain trigger   none" in story["nights"][day], day


def test_every_valid_batch_is_written_exactly_once(story):
    valid = [d for d in story["days"] if d != story["malformed"]]
    outputs = sorted((story["root"] / "scored" / "demo").glob("date=*/*.parquet"))
    assert [p.stem for p in outputs] == valid
    for day in valid:
        assert "1 scored, 0 already scored (skipped), 0 quarantined" in story["nights"][day]
    again = story["aeflow"]("nightly", "--config", str(story["config"]), "--date", valid[0])
    assert "0 scored, 1 already scored (skipped), 0 quarantined" in again.stdout
    assert sorted((story["root"] / "scored" / "demo").glob("date=*/*.parquet")) == outputs


def test_help_documents_the_orchestration_commands(story):
    listing = story["aeflow"]("--help").stdout
    for command in ("nightly", "retrain", "backfill", "serve"):
        assert command in listing
    assert "--date" in story["aeflow"]("nightly", "--help").stdout


def test_a_bad_date_is_one_clear_error_without_a_traceback(story):
    result = subprocess.run(
        [AEFLOW, "nightly", "--config", str(story["config"]), "--date", "last-tuesday"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "date must be a date YYYY-MM-DD" in result.stderr and "Traceback" not in result.stderr
