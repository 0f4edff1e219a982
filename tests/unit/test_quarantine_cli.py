"""`aeflow quarantine list|show|release`: inspect quarantined batches and put them back.

The score run here is the score flow's logic without Prefect: pending batches -> validate ->
quarantine or score (tasks.scoring.score_batch, exactly once per batch and model).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from model_support import register_tiny_champion

from flows.commands import quarantine as quarantine_commands
from flows.config import load_config
from models.registry import ModelRegistry
from tasks.demo_data import generate_demo_data
from tasks.io import Storage, list_batches
from tasks.scoring import find_pending_batches, score_batch
from tasks.validation import ReleaseError, quarantine, validate_batch

REPO_ROOT = Path(__file__).resolve().parents[2]
ROWS = 1200


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="aeflow")
    quarantine_commands.register(root.add_subparsers(dest="command", required=True))
    return root


def cli(*argv: str) -> int:
    args = parser().parse_args(list(argv))
    return args.handler(args)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def score_run(config: str) -> dict[str, list[str]]:
    """One score run as the flow does it; returns the batch ids per outcome."""
    cfg = load_config(config)
    layout = Storage.from_settings(cfg.storage, cfg.dataset)
    cols = cfg.columns
    version = ModelRegistry(layout.models).champion()
    available = list_batches(layout.incoming)
    plan = find_pending_batches(batches=available, storage=layout, model_version=version)
    done: dict[str, list[str]] = {"scored": [], "quarantined": [], "skipped": []}
    done["skipped"] = [s.batch_id for s in plan.skipped]
    for batch in plan.pending:
        outcome = validate_batch(
            batch, columns=cols, validation=cfg.validation, options=cfg.storage.options
        )
        if outcome.accepted:
            marker = score_batch(batch=batch, storage=layout, columns=cols, scoring=cfg.scoring)
            done[marker.status].append(batch.batch_id)
        else:
            quarantine(batch, outcome, storage=layout)
            done["quarantined"].append(batch.batch_id)
    return done


@pytest.fixture
def setup(tmp_path):
    """A demo config on a private root with a private suite copy, two clean days and a champion;
    the second day arrives broken (no merchant_risk_score) and is quarantined."""
    suite = tmp_path / "demo.json"
    shutil.copy(REPO_ROOT / "expectations" / "demo.json", suite)
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('root = "../data"', 'root = "root"')
    text = text.replace('suite = "../expectations/demo.json"', 'suite = "demo.json"')
    config = tmp_path / "demo.toml"
    config.write_text(text)
    cfg = load_config(config)
    layout = Storage.from_settings(cfg.storage, cfg.dataset)
    manifest = generate_demo_data(
        layout.incoming, days=2, rows_per_day=ROWS, seed=5, drift_day=None, malformed_day=None
    )
    day1, day2 = manifest.batch_ids
    day2_path, fixed = Path(manifest.paths[1]), tmp_path / "fixed.parquet"
    shutil.copy(day2_path, fixed)  # the good bytes stand for the re-exported, fixed batch
    pq.write_table(pq.read_table(fixed).drop_columns(["merchant_risk_score"]), day2_path)

    register_tiny_champion(layout, manifest.paths[0], tmp_path)

    first = score_run(str(config))
    assert first == {"scored": [day1], "quarantined": [day2], "skipped": []}
    return {
        "config": str(config),
        "layout": layout,
        "suite": suite,
        "broken_sha": sha256(Path(layout.quarantine(day2)) / "input" / f"{day2}.parquet"),
        "fixed": fixed,
        "day1": day1,
        "day2": day2,
    }


def test_list_and_show_name_the_batch_and_its_cause(setup, capsys):
    day2 = setup["day2"]
    assert cli("quarantine", "list", "--config", setup["config"]) == 0
    listing = capsys.readouterr().out
    assert day2 in listing and "missing column(s) ['merchant_risk_score']" in listing
    assert "1 quarantined batch(es)" in listing

    assert cli("quarantine", "list", "--config", setup["config"], "--json") == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert (entry["batch_id"], entry["rows"], entry["critical"]) == (day2, ROWS, 1)

    assert cli("quarantine", "show", day2, "--config", setup["config"]) == 0
    shown = capsys.readouterr().out
    assert f"# Batch `{day2}`: quarantined" in shown and "merchant_risk_score" in shown
    assert f"aeflow quarantine release {day2}" in shown

    assert cli("quarantine", "show", day2, "--config", setup["config"], "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input"]["sha256"] == setup["broken_sha"]
    with pytest.raises(ReleaseError, match="no quarantined batch 'nope'"):
        cli("quarantine", "show", "nope", "--config", setup["config"])


def test_release_refuses_a_batch_that_would_fail_again(setup):
    day2, layout = setup["day2"], setup["layout"]
    with pytest.raises(ReleaseError, match="would be quarantined again"):
        cli("quarantine", "release", day2, "--config", setup["config"])
    assert [b.batch_id for b in list_batches(layout.incoming)] == [setup["day1"]]
    assert (Path(layout.quarantine(day2)) / "report.json").is_file()


def test_releasing_a_fixed_batch_scores_it_exactly_once(setup, capsys):
    day1, day2, layout = setup["day1"], setup["day2"], setup["layout"]
    assert (
        cli(
            "quarantine",
            "release",
            day2,
            "--config",
            setup["config"],
            "--input",
            str(setup["fixed"]),
        )
        == 0
    )
    assert "re-validation now: passed" in capsys.readouterr().out
    assert sha256(Path(layout.incoming) / f"{day2}.parquet") == sha256(setup["fixed"])
    assert not Path(layout.quarantine(day2)).exists()
    # The untouched original and its report are archived with the release record.
    [archived] = list((Path(layout.quarantine()) / "_archive" / day2).iterdir())
    assert sha256(archived / "input" / f"{day2}.parquet") == setup["broken_sha"]
    release = json.loads((archived / "release.json").read_text())
    assert (release["source"], release["forced"]) == ("replacement", False)

    assert score_run(setup["config"]) == {"scored": [day2], "quarantined": [], "skipped": [day1]}
    assert score_run(setup["config"]) == {"scored": [], "quarantined": [], "skipped": [day1, day2]}
    marker = json.loads(Path(layout.success_marker(day2)).read_text())
    assert marker["rows_in"] == marker["rows_out"] == ROWS
    with pytest.raises(ReleaseError, match=f"no quarantined batch '{day2}'"):
        cli("quarantine", "release", day2, "--config", setup["config"])


def test_release_after_fixing_the_suite_puts_the_original_back(setup):
    day2, layout = setup["day2"], setup["layout"]
    # The reviewers decide merchant_risk_score is optional: drop it from the contract.
    suite = json.loads(setup["suite"].read_text())
    suite["expectations"] = [
        e for e in suite["expectations"] if e["kwargs"].get("column") != "merchant_risk_score"
    ]
    suite["expectations"][0]["kwargs"]["column_set"].remove("merchant_risk_score")
    setup["suite"].write_text(json.dumps(suite))
    config = Path(setup["config"])
    config.write_text(config.read_text().replace('    "merchant_risk_score",\n', ""))

    assert cli("quarantine", "release", day2, "--config", setup["config"]) == 0
    assert sha256(Path(layout.incoming) / f"{day2}.parquet") == setup["broken_sha"]


def test_force_releases_a_failing_batch_and_says_so(setup, capsys):
    day2, layout = setup["day2"], setup["layout"]
    assert cli("quarantine", "release", day2, "--config", setup["config"], "--force") == 0
    assert "released with --force" in capsys.readouterr().out
    [archived] = list((Path(layout.quarantine()) / "_archive" / day2).iterdir())
    assert json.loads((archived / "release.json").read_text())["forced"] is True
    # the next run validates it again and quarantines it again: nothing is scored by accident
    assert score_run(setup["config"])["quarantined"] == [day2]
