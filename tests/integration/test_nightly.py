"""Living with the pipeline: the nightly flow day by day over demo data, retraining and backfill.

One story, run once for the module: train on the first days, then one nightly run per day. The
malformed day must be quarantined, the drifted day detected and retrained on (the challenger
promoted or kept, with the reason recorded), and every valid batch written exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from events_support import read_events, related
from subprocess_support import wait_until

from flows.backfill import backfill_flow
from flows.config import load_config
from flows.feedback import feedback_flow
from flows.nightly import nightly_flow
from flows.retrain import retrain_flow
from flows.train import train_flow
from tasks.demo_data import generate_demo_data
from tasks.feedback import record_feedback
from tasks.io import Storage, read_table
from tasks.records import VerdictSubmission
from tasks.validation import draft_suite, suite_json

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
DAYS, ROWS_PER_DAY, TRAIN_DAYS = 7, 1200, 2
# Small and quick: a few epochs, no baselines or HTML report, a 5-day retraining window.
SMALL_AND_QUICK = {
    "model": {"epochs": 8},
    "evaluation": {"baselines": False, "report": False},
    "retrain": {"window_days": 5},
}


def write_config(workdir: Path) -> Path:
    """The demo config on a private storage root (YAML, so sections merge whatever the TOML holds)."""
    data = tomllib.loads((REPO_ROOT / "configs" / "demo.toml").read_text())
    data["storage"]["root"] = "data"
    data["validation"]["suite"] = "demo.json"
    for section, values in SMALL_AND_QUICK.items():
        data[section] = {**data.get(section, {}), **values}
    config = workdir / "demo.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def draft_demo_suite(cfg, reference_paths: list[str]) -> None:
    """The data contract, drafted from the training days as `aeflow expectations init` does."""
    import pyarrow as pa

    reference = pa.concat_tables([pq.read_table(p) for p in reference_paths])
    cols = cfg.columns
    suite = draft_suite(reference, name=cfg.dataset, columns=cols)
    Path(cfg.suite_path).write_text(suite_json(suite))


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    started = dt.datetime.now(dt.UTC)
    workdir = tmp_path_factory.mktemp("nightly")
    config = write_config(workdir)
    cfg = load_config(config)
    layout = Storage(cfg.storage_root, cfg.dataset)
    manifest = generate_demo_data(
        layout.incoming, days=DAYS, rows_per_day=ROWS_PER_DAY, seed=11, drift_day=-3,
        malformed_day=-2,
    )  # fmt: skip
    draft_demo_suite(cfg, manifest.paths[:TRAIN_DAYS])
    trained = train_flow(config=str(config), until=manifest.batch_ids[TRAIN_DAYS - 1])
    results = {day: nightly_flow(config=str(config), date=day) for day in manifest.batch_ids}
    return {
        "config": config,
        "cfg": cfg,
        "layout": layout,
        "manifest": manifest,
        "trained": trained,
        "results": results,
        "started": started,
    }


def test_the_malformed_day_is_quarantined_and_not_scored(nights):
    malformed = nights["manifest"].malformed_batch_id
    night = nights["results"][malformed]
    assert [q["batch_id"] for q in night["score"]["quarantined"]] == [malformed]
    assert night["score"]["batches_scored"] == 0 and night["drift"] == []
    layout = nights["layout"]
    assert Path(layout.quarantine(malformed), "report.json").is_file()
    assert not list(Path(layout.scored).glob(f"date=*/{malformed}.parquet"))
    assert not night["retrain_decision"]["retrain"]


def test_the_drifted_day_is_detected_and_triggers_a_retrain(nights):
    manifest, layout = nights["manifest"], nights["layout"]
    drifted = manifest.drift_batch_id
    night = nights["results"][drifted]
    [drift] = night["drift"]
    assert drift["drifted"] and "amount" in drift["drifted_columns"]
    report = json.loads(Path(layout.reports("drift"), f"{drifted}.json").read_text())
    by_column = {c["column"]: c for c in report["columns"]}
    assert by_column["amount"]["psi"] >= 0.25
    assert report["reference_version"] == nights["trained"]["version"]
    decision = night["retrain_decision"]
    assert decision["retrain"] and decision["triggers"] == ["drift"]
    assert any(drifted in reason for reason in decision["reasons"])

    normal_days = [b for b in manifest.batch_ids if b not in (drifted, manifest.malformed_batch_id)]
    for day in normal_days:
        result = nights["results"][day]
        assert [d["status"] != "drift" for d in result["drift"]] == [True], day
        assert result["retrain"] is None, day


def test_the_challenger_is_promoted_or_kept_with_a_recorded_reason(nights):
    manifest, layout = nights["manifest"], nights["layout"]
    retrained = nights["results"][manifest.drift_batch_id]["retrain"]
    assert retrained["trigger"] == "drift" and retrained["decision"] in ("promote", "refuse")
    assert retrained["reason"] and retrained["gate"]["comparisons"]
    # the window: accepted batches of the last 5 days up to the drifted day, flagged rows left out
    window = retrained["window"]
    assert window["batches"] == manifest.batch_ids[manifest.drift_day - 4 : manifest.drift_day + 1]
    assert window["exclude_flagged"] and window["rows_left_out"] > 0

    registry = layout.registry()
    entry = registry.entry(retrained["version"])
    assert entry["gate"]["decision"] == retrained["decision"]
    assert entry["training_batches"] == window["batches"]
    event = registry.champion_state()["history"][-1]
    assert event["version"] == retrained["version"]
    assert event["action"] == ("promote" if retrained["promoted"] else "refuse")
    assert retrained["reason"] in event["reason"]
    expected_champion = (
        retrained["version"] if retrained["promoted"] else nights["trained"]["version"]
    )
    assert registry.champion() == expected_champion == retrained["champion_after"]
    stored = json.loads(Path(retrained["record"]).read_text())
    assert stored["reason"] == retrained["reason"] and stored["trigger_reasons"]
    # the training rows lose the flagged rows (the holdout keeps every row and stays as the
    # record of the comparison); the training copies are discarded once the model is fitted
    assert retrained["train_rows"] == window["rows_before_filter"] - window["rows_left_out"]
    run_dir = Path(layout.reports(retrained["run"]))
    assert (run_dir / "holdout.parquet").is_file()
    assert not (run_dir / "train.parquet").exists()
    assert not (run_dir / "train-filtered.parquet").exists()


def test_every_valid_batch_is_written_exactly_once(nights):
    manifest, layout = nights["manifest"], nights["layout"]
    valid = [b for b in manifest.batch_ids if b != manifest.malformed_batch_id]
    outputs = sorted(Path(layout.scored).glob("date=*/*.parquet"))
    assert sorted(p.stem for p in outputs) == valid
    for path in outputs:
        assert pq.read_metadata(path).num_rows == ROWS_PER_DAY
    scored_nights = [b for b in valid if nights["results"][b]["score"]["batches_scored"] == 1]
    assert scored_nights == valid

    # a second run of a night scores nothing again and leaves the output untouched
    day = valid[0]
    before = {p: p.stat().st_mtime_ns for p in outputs}
    again = nightly_flow(config=str(nights["config"]), date=day, retrain=False)
    assert again["score"]["batches_scored"] == 0 and again["score"]["batches_skipped"] == 1
    assert {p: p.stat().st_mtime_ns for p in outputs} == before


def test_every_night_leaves_reports_and_artifacts(nights):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    layout = nights["layout"]
    for day in nights["manifest"].batch_ids:
        stored = json.loads(Path(layout.reports("nightly"), f"{day}.json").read_text())
        assert stored["night"] == day and stored["report"].endswith(f"{day}.json")

    async def latest(key: str) -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
        return found[0].data if found else ""

    assert "Nightly run: demo" in asyncio.run(latest("demo-nightly"))
    assert "# Drift: demo" in asyncio.run(latest("demo-drift"))
    assert "**Trigger:** drift" in asyncio.run(latest("demo-retrain"))


def test_each_step_is_a_prefect_event_naming_dataset_batch_and_model(nights):
    """Read back from the server's events API: the resources and counts docs/events.md names."""
    manifest, trained = nights["manifest"], nights["trained"]
    drifted, malformed = manifest.drift_batch_id, manifest.malformed_batch_id
    retrained = nights["results"][drifted]["retrain"]
    outcome = "aeflow.model.promoted" if retrained["promoted"] else "aeflow.model.refused"
    wanted = {"aeflow.batch.scored", "aeflow.batch.quarantined", "aeflow.drift.detected", outcome}

    def by_name():
        found: dict[str, list] = {}
        for event in read_events("demo", since=nights["started"]):
            found.setdefault(event.event, []).append(event)
        nightly_done = len(found.get("aeflow.nightly.finished", [])) >= len(manifest.batch_ids)
        return found if wanted <= set(found) and nightly_done else None

    found = wait_until(by_name, 30, "the nightly story's events on the Prefect server")
    for event in [e for events in found.values() for e in events]:
        assert event.resource.id == "aeflow.dataset.demo"
        assert related(event, "flow-run"), event.event  # Prefect ties each to its run

    scored = {related(e, "batch")[0]: e for e in found["aeflow.batch.scored"]}
    for day in manifest.batch_ids:
        if day == malformed:
            assert f"aeflow.batch.demo/{day}" not in scored
            continue
        event = scored[f"aeflow.batch.demo/{day}"]
        assert event.payload["rows_scored"] == ROWS_PER_DAY == event.payload["rows_in"]
        version = event.payload["model_version"]
        assert related(event, "model-version") == [f"aeflow.model.demo/{version}"]

    [quarantined] = found["aeflow.batch.quarantined"]  # once: a re-run finds it in quarantine
    assert related(quarantined, "batch") == [f"aeflow.batch.demo/{malformed}"]
    [record] = nights["results"][malformed]["score"]["quarantined"]
    assert quarantined.payload["rows"] == record["rows"] and quarantined.payload["reason"]

    [drift] = [
        e for e in found["aeflow.drift.detected"] if e.payload["drifted"][0]["batch_id"] == drifted
    ]
    assert related(drift, "batch") == [f"aeflow.batch.demo/{drifted}"]
    assert related(drift, "model-version") == [f"aeflow.model.demo/{trained['version']}"]
    assert drift.resource["aeflow.retrain"] == "started"  # the night retrained itself
    assert drift.payload["batches_drifted"] == 1 and "amount" in drift.payload["reason"]

    first = [
        e for e in found["aeflow.model.promoted"] if e.payload["version"] == trained["version"]
    ]
    assert first and related(first[0], "model-version") == [
        f"aeflow.model.demo/{trained['version']}"
    ]
    [gated] = [e for e in found[outcome] if e.payload["version"] == retrained["version"]]
    assert gated.payload["trigger"] == "drift" and gated.payload["reason"]
    assert related(gated, "champion") == [f"aeflow.model.demo/{trained['version']}"]


def scored_rows(layout: Storage, batch_id: str):
    """The batch's scored output (id, flag, model version) as a DataFrame."""
    (path,) = Path(layout.scored).glob(f"date=*/{batch_id}.parquet")
    columns = ["transaction_id", "is_anomaly", "model_version"]
    return pq.read_table(path, columns=columns).to_pandas()


def test_a_manual_retrain_can_keep_the_flagged_rows(nights):
    """Flagged rows stay in with --keep-flagged; rows analysts confirmed as anomalies still leave
    (docs/feedback.md)."""
    cfg, layout = nights["cfg"], nights["layout"]
    oldest = nights["manifest"].batch_ids[2]  # the window's oldest day: its rows train
    unflagged = scored_rows(layout, oldest).query("not is_anomaly")["transaction_id"][:20]
    record_feedback(
        VerdictSubmission(verdict="confirmed", rows=[[oldest, str(i)] for i in unflagged]),
        storage=layout,
        columns=cfg.columns,
    )
    retrained = retrain_flow(
        config=str(nights["config"]),
        trigger="manual",
        trigger_reasons=["test"],
        exclude_flagged=False,
        promote=False,
    )
    assert retrained["trigger"] == "manual" and retrained["trigger_reasons"] == ["test"]
    window = retrained["window"]
    assert (window["rows_left_out"], window["confirmed_left_out"]) == (20, 20)
    assert window["flagged_left_out"] == 0 and not retrained["promoted"]
    assert retrained["gate"]["applied"] is False
    # the newest accepted day ends the window; the quarantined day is never part of it
    manifest = nights["manifest"]
    assert retrained["window"]["batches"][-1] == manifest.batch_ids[-1]
    assert manifest.malformed_batch_id not in retrained["window"]["batches"]


def test_false_positives_on_the_champions_flags_fire_the_feedback_trigger(nights):
    layout = nights["layout"]
    champion = layout.registry().champion()
    day = next(
        b
        for b in reversed(nights["manifest"].batch_ids)
        if b != nights["manifest"].malformed_batch_id
        and (scored_rows(layout, b)["model_version"] == champion).all()
    )
    flagged = scored_rows(layout, day).query("is_anomaly")["transaction_id"]
    # the verdicts through the feedback flow, as a deployment or another system would send them
    rows = [[day, str(i)] for i in flagged]
    recorded = feedback_flow(config=str(nights["config"]), verdict="false_positive", rows=rows)
    assert recorded["status"] == "recorded" and recorded["rows"] == len(flagged)
    again = feedback_flow(config=str(nights["config"]), verdict="false_positive", rows=rows)
    assert again["status"] == "already_recorded"
    data = yaml.safe_load(Path(nights["config"]).read_text())
    data["feedback"] = {"precision_floor": 0.5, "min_verdicts": 3}
    config = Path(nights["config"]).with_name("demo-feedback.yaml")
    config.write_text(yaml.safe_dump(data))
    night = nightly_flow(config=str(config), date=day, retrain=False)
    decision = night["retrain_decision"]
    assert "feedback" in decision["triggers"] and night["retrain"] is None
    precision = decision["flag_precision"]
    assert precision["model_version"] == champion and precision["precision"] == 0.0
    assert precision["reviewed"] == len(flagged) >= 3
    assert night["feedback"]["over_time"][-1]["date"] == day


def test_retraining_without_accepted_batches_is_skipped_with_a_reason(tmp_path):
    since = dt.datetime.now(dt.UTC)
    config = write_config(tmp_path)
    skipped = retrain_flow(config=str(config), until="2026-01-05")
    assert skipped["version"] is None and skipped["decision"] == "skipped"
    assert skipped["reason"].startswith(
        "nothing to retrain on: no batch dated 2026-01-01..2026-01-05 has been validated and scored"
    )
    assert Path(skipped["record"]).is_file()

    def skip_event():
        found = read_events("demo", since, prefix="aeflow.retrain.skipped")
        return [e for e in found if e.payload["run"] == skipped["run"]]

    [event] = wait_until(skip_event, 30, "the aeflow.retrain.skipped event")
    assert event.payload["reason"] == skipped["reason"] and event.payload["until"] == "2026-01-05"
    assert event.payload["trigger"] == "manual" and event.payload["window_days"] == 5


def test_backfill_rescores_a_date_range_in_place(nights):
    manifest, layout = nights["manifest"], nights["layout"]
    first_version = nights["trained"]["version"]
    start, end = manifest.batch_ids[0], manifest.batch_ids[1]
    summary = backfill_flow(
        config=str(nights["config"]), start=start, end=end, model_version=first_version, force=True
    )
    assert summary["batches_scored"] == 2 and summary["model_version"] == first_version
    outputs = sorted(Path(layout.scored).glob("date=*/*.parquet"))
    assert len(outputs) == DAYS - 1  # replaced, not added
    for day in (start, end):
        [path] = [p for p in outputs if p.stem == day]
        versions = read_table(str(path), columns=["model_version"]).column(0).unique()
        assert versions.to_pylist() == [first_version]
    again = backfill_flow(
        config=str(nights["config"]), start=start, end=end, model_version=first_version
    )
    assert again["batches_scored"] == 0 and again["batches_skipped"] == 2


def test_a_scheduled_night_scores_only_the_new_batch(nights, tmp_path):
    """Without a date (as the cron deployment runs it), the night is what arrived since."""
    layout = nights["layout"]
    config = str(nights["config"])
    quiet = nightly_flow(config=config, retrain=False)
    assert quiet["score"]["batches_scored"] == 0 and quiet["drift"] == []
    assert quiet["score"]["batches_skipped"] == 0  # history is not tonight's business

    # One more day arrives: the generator writes earlier days byte for byte the same.
    more = generate_demo_data(
        tmp_path, days=DAYS + 1, rows_per_day=ROWS_PER_DAY, seed=11, drift_day=-4,
        malformed_day=-3,
    )  # fmt: skip
    new_day = more.batch_ids[-1]
    shutil.copy(more.paths[-1], Path(layout.incoming, f"{new_day}.parquet"))
    night = nightly_flow(config=config, retrain=False)
    assert [m["batch_id"] for m in night["score"]["scored"]] == [new_day]
    assert [d["batch_id"] for d in night["drift"]] == [new_day]
    assert night["night"] != new_day and Path(night["report"]).is_file()
