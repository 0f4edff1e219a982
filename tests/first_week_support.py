"""The first-week story of tests/e2e/test_first_week*.py: a team's table through the installed
`aeflow` command, day by day, and what the week must leave behind (one module per table, so the two
weeks can run on different test processes)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from subprocess_support import AEFLOW

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
