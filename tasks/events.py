"""aeflow's Prefect events: their names, the resources they name, the counts they carry, and one
safe way to emit them.

Every event's primary resource is the dataset; the batch and the model version are related
resources (docs/events.md has the full table, with each payload)::

    aeflow.dataset.<dataset>              resource       (name: the dataset; label aeflow.dataset)
    aeflow.batch.<dataset>/<batch_id>     related, role "batch"          (name: the batch id)
    aeflow.model.<dataset>/<version>      related, role "model-version"  (the version that scored,
                                          or the challenger), "champion" (the champion it was
                                          compared with or replaced)

A dataset name never holds "/", and a batch id is a file name, so "/" splits them unambiguously.
Prefect adds the flow run, flow, deployment and task run of the emitting code as further related
resources. Counts that are not known are ``null`` in a payload, never 0.

Emitting never fails a run: :func:`emit` logs what went wrong and returns False, and every call
site emits after the outputs it announces are committed. :func:`wait_until_sent` lets a run's
last event (its result, tasks.report.run_summary.publish_result) reach the API before the
run's final state does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.records import (
    DriftReport,
    GateDecision,
    QuarantineRecord,
    RetrainRecord,
    ScoreMarker,
)

BATCH_SCORED = "aeflow.batch.scored"
BATCH_QUARANTINED = "aeflow.batch.quarantined"
DRIFT_DETECTED = "aeflow.drift.detected"
MODEL_PROMOTED = "aeflow.model.promoted"
MODEL_REFUSED = "aeflow.model.refused"
RETRAIN_SKIPPED = "aeflow.retrain.skipped"
# With aeflow.<flow>.finished (see run_finished): every event a flow emits.
EVENTS = (
    BATCH_SCORED,
    BATCH_QUARANTINED,
    DRIFT_DETECTED,
    MODEL_PROMOTED,
    MODEL_REFUSED,
    RETRAIN_SKIPPED,
)

# Roles of the related resources.
BATCH_ROLE = "batch"
MODEL_ROLE = "model-version"
CHAMPION_ROLE = "champion"

# The label of aeflow.drift.detected's dataset resource that says who retrains on the drift:
# "started" (the emitting run retrains), "wanted" (retrain.on_drift is on but the run does not
# retrain: the job of the retrain-on-drift automation), "off" (retrain.on_drift is off).
RETRAIN_LABEL = "aeflow.retrain"

# Prefect allows 100 related resources per event and adds the run's own (flow run, flow,
# deployment, tags): a drift event names at most this many batches; its payload counts them all.
MAX_RELATED_BATCHES = 50

logger = logging.getLogger("aeflow.events")


def dataset_resource_id(dataset: str) -> str:
    return f"aeflow.dataset.{dataset}"


def batch_resource_id(dataset: str, batch_id: str) -> str:
    return f"aeflow.batch.{dataset}/{batch_id}"


def model_resource_id(dataset: str, version: str) -> str:
    return f"aeflow.model.{dataset}/{version}"


@dataclass(frozen=True)
class PipelineEvent:
    """One aeflow event before it is emitted.

    ``name``: the event (e.g. :data:`BATCH_SCORED`); ``payload``: JSON values, counts as ints
    (``None`` when unknown); ``batches``: the batch ids it concerns; ``model_version`` and
    ``champion``: the model versions it concerns (role "model-version" and "champion");
    ``resource_name``: the dataset resource's name (the dataset by default); ``labels``: extra
    labels of the dataset resource, which automations can match.
    """

    name: str
    dataset: str
    payload: dict[str, Any]
    batches: tuple[str, ...] = ()
    model_version: str | None = None
    champion: str | None = None
    resource_name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def resource(self) -> dict[str, str]:
        return {
            "prefect.resource.id": dataset_resource_id(self.dataset),
            "prefect.resource.name": self.resource_name or self.dataset,
            "aeflow.dataset": self.dataset,
            **self.labels,
        }

    def related(self) -> list[dict[str, str]]:
        related = [
            {
                "prefect.resource.id": batch_resource_id(self.dataset, batch_id),
                "prefect.resource.role": BATCH_ROLE,
                "prefect.resource.name": batch_id,
            }
            for batch_id in self.batches[:MAX_RELATED_BATCHES]
        ]
        for version, role in ((self.model_version, MODEL_ROLE), (self.champion, CHAMPION_ROLE)):
            if version:
                related.append(
                    {
                        "prefect.resource.id": model_resource_id(self.dataset, version),
                        "prefect.resource.role": role,
                        "prefect.resource.name": version,
                    }
                )
        return related


# --------------------------------------------------------------------------------- batches
def batch_scored(dataset: str, marker: ScoreMarker) -> PipelineEvent:
    """A batch's scored output was committed (``marker``: its success marker)."""
    return PipelineEvent(
        BATCH_SCORED,
        dataset,
        {
            "batch_id": marker.batch_id,
            "date": marker.date,
            "rows_in": marker.rows_in,
            "rows_scored": marker.rows_out,
            "rows_flagged": marker.flagged,
            "flagged_share": marker.flagged / marker.rows_out if marker.rows_out else 0.0,
            "model_version": marker.model_version,
            "output": marker.output,
            "seconds": marker.seconds,
        },
        batches=(marker.batch_id,),
        model_version=marker.model_version,
    )


def batch_quarantined(dataset: str, record: QuarantineRecord) -> PipelineEvent:
    """A batch was moved into quarantine with its report (``rows`` is None when unknown)."""
    return PipelineEvent(
        BATCH_QUARANTINED,
        dataset,
        {
            "batch_id": record.batch_id,
            "rows": record.rows,
            "reason": record.reason,
            "quarantine_dir": record.quarantine_dir,
        },
        batches=(record.batch_id,),
    )


# ----------------------------------------------------------------------------------- drift
def drift_retraining(*, on_drift: bool, retrains_in_run: bool) -> str:
    """The :data:`RETRAIN_LABEL` value of a drift event: "started", "wanted" or "off"."""
    if retrains_in_run:
        return "started"
    return "wanted" if on_drift else "off"


def drift_detected(
    dataset: str, reports: Sequence[DriftReport], *, retraining: str
) -> PipelineEvent | None:
    """One event for a run's drifted batches (None when none drifted): the reference model
    version, each drifted batch with its drifted columns, and who retrains (``retraining``, see
    :func:`drift_retraining`)."""
    drifted = [r for r in reports if r.drifted]
    if not drifted:
        return None
    versions = sorted({r.reference_version for r in drifted if r.reference_version})
    return PipelineEvent(
        DRIFT_DETECTED,
        dataset,
        {
            "batches_measured": len(reports),
            "batches_drifted": len(drifted),
            "model_version": versions[0] if len(versions) == 1 else None,
            "retrain": retraining,
            "reason": "; ".join(f"drift in {r.batch_id}: " + "; ".join(r.reasons) for r in drifted),
            "drifted": [
                {
                    "batch_id": r.batch_id,
                    "status": r.status,
                    "drifted_columns": list(r.drifted_columns),
                    "score_psi": r.score.get("psi"),
                    "rows": r.rows,
                    "flag_rate": r.flag_rate.get("batch"),
                    "reference_flag_rate": r.flag_rate.get("reference"),
                    "report": r.report,
                }
                for r in drifted[:MAX_RELATED_BATCHES]
            ],
        },
        batches=tuple(r.batch_id for r in drifted),
        model_version=versions[0] if len(versions) == 1 else None,
        labels={RETRAIN_LABEL: retraining},
    )


# ---------------------------------------------------------------------------------- models
def model_gated(
    dataset: str, version: str, gate: GateDecision, context: dict[str, Any]
) -> PipelineEvent | None:
    """The promotion gate's outcome for challenger ``version``: :data:`MODEL_PROMOTED` when it
    became the champion, :data:`MODEL_REFUSED` when the gate refused it (also in a dry run:
    ``applied`` false), None otherwise (a dry run it would pass, or the champion itself).
    ``context``: the run and the retraining trigger, when known."""
    if gate.promoted:
        name = MODEL_PROMOTED
    elif gate.decision == "refuse":
        name = MODEL_REFUSED
    else:
        return None
    return PipelineEvent(
        name,
        dataset,
        {
            "version": version,
            "decision": gate.decision,
            "applied": gate.applied,
            "champion_before": gate.champion_before,
            "champion_after": gate.champion_after,
            "reason": "; ".join(gate.reasons),
            "reasons": list(gate.reasons),
            "comparisons": [
                {key: c.get(key) for key in ("metric", "challenger", "champion", "passed")}
                for c in gate.comparisons
            ],
            "trigger": context.get("trigger"),
            "run": context.get("run"),
        },
        model_version=version,
        champion=gate.champion_before if gate.champion_before != version else None,
    )


def retrain_skipped(record: RetrainRecord) -> PipelineEvent:
    """A retraining found nothing to train on (``record``: the retrain flow's record)."""
    return PipelineEvent(
        RETRAIN_SKIPPED,
        record.dataset,
        {
            "reason": record.skipped_reason,
            "trigger": record.trigger,
            "trigger_reasons": list(record.trigger_reasons),
            "window_days": record.window.days,
            "until": record.window.until,
            "champion": record.champion_after,
            "run": record.run,
        },
        champion=record.champion_after,
    )


# ------------------------------------------------------------------------------------ runs
def run_finished(
    kind: str, dataset: str, line: str, payload: dict[str, Any], model_version: str | None = None
) -> PipelineEvent:
    """``aeflow.<kind>.finished``: a flow run's result, its dataset resource named by the result
    line (so `prefect deployment run --watch` ends with it), its counts as payload."""
    return PipelineEvent(
        f"aeflow.{kind}.finished",
        dataset,
        dict(payload),
        model_version=model_version,
        resource_name=line,
    )


# ---------------------------------------------------------------------------------- emit
def _run_logger() -> logging.Logger | logging.LoggerAdapter:
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def emit(event: PipelineEvent | None) -> bool:
    """Emit ``event`` to the Prefect API (None: nothing to say). Never raises: an event that
    cannot be built or sent is logged as a warning and the run goes on; returns whether Prefect
    took it (False too when no Prefect API is configured to send events to)."""
    if event is None:
        return False
    try:
        from prefect.events import emit_event

        sent = emit_event(
            event=event.name,
            resource=event.resource(),
            related=event.related(),
            payload=event.payload,
        )
    except Exception as exc:  # an event is a notice: losing one must not lose the run's work
        _run_logger().warning(
            "could not emit the Prefect event %s for %s (%s: %s); the run goes on, its outputs "
            "are written",
            event.name,
            event.dataset,
            type(exc).__name__,
            exc,
        )
        return False
    return sent is not None


def wait_until_sent(timeout_s: float = 10.0) -> None:
    """Wait (``timeout_s`` at most) until Prefect's events worker has sent every event this
    process emitted.

    Events go out from a background queue while a run's final state goes to the API directly,
    so the state could arrive first, and `prefect deployment run --watch` stops at the final
    state without the run's last events (its result line). A bounded wait: an API that does not
    answer never holds the run for longer."""
    import threading

    try:
        from prefect.events.worker import EventsWorker

        worker = EventsWorker.instance()
    except Exception:  # no events worker to wait for: nothing was queued
        return
    waiting = threading.Thread(target=worker.wait_until_empty, daemon=True)
    waiting.start()
    waiting.join(timeout_s)
