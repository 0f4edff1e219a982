"""aeflow's events (tasks/events.py): the documented resources and payloads, and an emission that
fails without failing anything."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import prefect.events
import prefect.main  # noqa: F401  (Prefect configures logging on this import: before caplog attaches)
import pytest
import yaml
from prefect.exceptions import EventTooLarge

from tasks import events
from tasks.records import DriftReport, GateDecision, QuarantineRecord, ScoreMarker

REPO_ROOT = Path(__file__).resolve().parents[2]


def marker(batch_id="2026-01-05", rows=400, flagged=3, version="v1") -> ScoreMarker:
    return ScoreMarker(
        batch_id=batch_id, status="scored", rows_in=rows, rows_out=rows, flagged=flagged,
        model_version=version, output=f"/data/scored/demo/date=2026-01-05/{batch_id}.parquet",
        date="2026-01-05", seconds=1.5,
    )  # fmt: skip


def drift_report(batch_id: str, drifted: bool, version="v1") -> DriftReport:
    return DriftReport(
        batch_id=batch_id, dataset="demo", reference_version=version,
        status="drift" if drifted else "ok", drifted=drifted,
        reasons=["amount PSI 0.41 >= 0.25"] if drifted else [], rows=400, rows_scored=400,
        drifted_columns=["amount"] if drifted else [], warned_columns=[], columns=[],
        score={"psi": 0.3}, flag_rate={"batch": 0.02, "reference": 0.01}, thresholds={},
        report=f"/data/reports/demo/drift/{batch_id}.json",
    )  # fmt: skip


def gate(decision: str, promoted: bool, applied=True, before="v1", after="v1") -> GateDecision:
    return GateDecision(
        decision=decision, reasons=["reconstruction error 0.91 vs champion 0.95"],
        comparisons=[{"metric": "reconstruction", "challenger": 0.91, "champion": 0.95,
                      "margin": 0.05, "limit": 0.9975, "passed": True}],
        champion_version=before, reconstruction_margin=0.05, auroc_margin=0.01,
        applied=applied, champion_before=before, champion_after=after, promoted=promoted,
    )  # fmt: skip


def roles(event: events.PipelineEvent) -> dict[str, str]:
    return {r["prefect.resource.role"]: r["prefect.resource.id"] for r in event.related()}


def test_a_scored_batch_names_dataset_batch_and_model_and_carries_its_counts():
    event = events.batch_scored("demo", marker())
    assert event.name == "aeflow.batch.scored"
    assert event.resource() == {
        "prefect.resource.id": "aeflow.dataset.demo",
        "prefect.resource.name": "demo",
        "aeflow.dataset": "demo",
    }
    assert roles(event) == {
        "batch": "aeflow.batch.demo/2026-01-05",
        "model-version": "aeflow.model.demo/v1",
    }
    assert event.payload["rows_in"] == 400 and event.payload["rows_flagged"] == 3
    assert event.payload["flagged_share"] == pytest.approx(3 / 400)


def test_a_quarantined_batch_with_an_unreadable_row_count_says_null_not_zero():
    record = QuarantineRecord(
        batch_id="broken", status="quarantined", rows=None,
        quarantine_dir="/data/quarantine/demo/broken", reason="not a Parquet file",
    )  # fmt: skip
    event = events.batch_quarantined("demo", record)
    assert event.name == "aeflow.batch.quarantined"
    assert event.payload["rows"] is None
    assert roles(event) == {"batch": "aeflow.batch.demo/broken"}


@pytest.mark.parametrize(
    ("on_drift", "in_run", "label"),
    [
        (True, True, "started"),
        (True, False, "wanted"),
        (False, False, "off"),
        (False, True, "started"),
    ],
)
def test_the_drift_event_says_who_retrains(on_drift, in_run, label):
    reports = [drift_report("a", True), drift_report("b", False)]
    retraining = events.drift_retraining(on_drift=on_drift, retrains_in_run=in_run)
    event = events.drift_detected("demo", reports, retraining=retraining)
    assert event.resource()["aeflow.retrain"] == label == event.payload["retrain"]
    assert event.payload["batches_measured"] == 2 and event.payload["batches_drifted"] == 1
    assert roles(event) == {"batch": "aeflow.batch.demo/a", "model-version": "aeflow.model.demo/v1"}
    assert event.payload["reason"] == "drift in a: amount PSI 0.41 >= 0.25"


def test_no_drifted_batch_is_no_drift_event():
    assert events.drift_detected("demo", [drift_report("a", False)], retraining="off") is None
    assert events.emit(None) is False


def test_a_night_of_many_drifted_batches_stays_within_prefects_related_resource_limit():
    reports = [drift_report(f"b{i:03d}", True) for i in range(120)]
    event = events.drift_detected("demo", reports, retraining="started")
    assert len(event.related()) == events.MAX_RELATED_BATCHES + 1
    assert event.payload["batches_drifted"] == 120


def test_the_gate_outcome_is_promoted_refused_or_nothing():
    promoted = events.model_gated("demo", "v2", gate("promote", True, after="v2"), {"run": "r1"})
    assert promoted.name == "aeflow.model.promoted"
    assert roles(promoted) == {"model-version": "aeflow.model.demo/v2",
                               "champion": "aeflow.model.demo/v1"}  # fmt: skip
    refused = events.model_gated("demo", "v2", gate("refuse", False), {"trigger": "drift"})
    assert refused.name == "aeflow.model.refused" and refused.payload["trigger"] == "drift"
    assert refused.payload["champion_after"] == "v1"
    dry_run = events.model_gated("demo", "v2", gate("promote", False, applied=False), {})
    assert dry_run is None
    first = events.model_gated("demo", "v1", gate("promote", True, before=None), {})
    assert roles(first) == {"model-version": "aeflow.model.demo/v1"}


def test_the_finished_event_is_named_by_the_result_line():
    event = events.run_finished("score", "demo", "demo scored with v1: ...", {"rows_in": 3}, "v1")
    assert event.name == "aeflow.score.finished"
    assert event.resource()["prefect.resource.name"] == "demo scored with v1: ..."
    assert roles(event) == {"model-version": "aeflow.model.demo/v1"}


@pytest.mark.parametrize("error", [RuntimeError("API gone"), "too large"])
def test_an_emission_that_fails_is_logged_and_never_raised(monkeypatch, caplog, error):
    def failing(**_):
        raise EventTooLarge(2_000_000, 1_500_000) if error == "too large" else error

    monkeypatch.setattr(prefect.events, "emit_event", failing)
    with caplog.at_level(logging.WARNING, logger="aeflow.events"):
        assert events.emit(events.batch_scored("demo", marker())) is False
    assert "could not emit the Prefect event aeflow.batch.scored for demo" in caplog.text
    assert "the run goes on" in caplog.text


def test_the_shipped_automations_template_only_payload_fields_the_events_carry():
    """infra/automations.yaml's Jinja reads `event.payload.X`: each X exists in that event."""
    payloads = {
        "aeflow.batch.quarantined": events.batch_quarantined(
            "demo", QuarantineRecord("b", "quarantined", 1, "/q", "why")
        ).payload,
        "aeflow.drift.detected": events.drift_detected(
            "demo", [drift_report("a", True)], retraining="wanted"
        ).payload,
        "aeflow.model.refused": events.model_gated("demo", "v2", gate("refuse", False), {}).payload,
    }
    definitions = yaml.safe_load((REPO_ROOT / "infra" / "automations.yaml").read_text())
    for automation in definitions["automations"]:
        [expected] = automation["trigger"]["expect"]
        used = set(re.findall(r"event\.payload\.([a-z_]+)", yaml.safe_dump(automation)))
        assert used and used <= set(payloads[expected]), (automation["name"], used)
        assert automation["trigger"]["match"]["prefect.resource.id"] == "aeflow.dataset.${dataset}"
