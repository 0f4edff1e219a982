"""The `retrain` flow: a challenger on the recent accepted batches, through the promotion gate.

Wiring only. The same tasks as the train flow (split -> fit -> evaluate -> champion on the same
holdout -> gate -> report), with two differences:

- the window is the accepted batches (validated and scored, never quarantined) of the last
  ``retrain.window_days`` days, not whatever lies in incoming/;
- with ``retrain.exclude_flagged`` the rows the champion flagged are left out of the *training*
  rows (after the split, so the holdout the gate compares on is untouched).

Every run records why it ran (the trigger: drift, model age, the weekly schedule or a person) and
why the challenger was promoted or kept, in ``<root>/reports/<dataset>/<run>/retrain.json``, in the
registry (the challenger's entry and champion.json's history) and as a Prefect artifact.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger

from flows.config import PipelineConfig, load_config
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from flows.train import train_evaluate_gate
from models.registry import ModelRegistry
from tasks.drift import ensure_reference_task
from tasks.evaluate import new_run_id
from tasks.io import StorageLayout, join
from tasks.reporting import artifact_key, publish_record_task, publish_result
from tasks.window import parse_date, training_window_task

RECORD_FILE = "retrain.json"


def ensure_drift_reference(
    cfg: PipelineConfig, layout: StorageLayout, version: str
) -> dict[str, Any]:
    """The drift reference profile of model ``version`` with the config's drift settings, built
    from its training batches if it does not exist yet."""
    cols = cfg.columns
    return ensure_reference_task(
        layout.root,
        cfg.dataset,
        version,
        cols.numeric,
        cols.categorical,
        cols.missing_values,
        cfg.drift.numeric_bins,
        cfg.drift.max_levels,
        cfg.drift.reference_rows,
        cfg.training.seed,
        cfg.storage.options,
    )


def retrain_markdown(record: dict[str, Any]) -> str:
    """The retraining decision for people: why it ran, on what, and why the challenger was promoted
    or kept."""
    window = record["window"]
    lines = [
        f"# Retraining: {record['dataset']} ({record['run']})",
        "",
        f"**Trigger:** {record['trigger']}",
    ]
    lines += [f"- {reason}" for reason in record["trigger_reasons"]]
    if record["version"] is None:
        return "\n".join([*lines, "", f"**Skipped:** {record['reason']}", ""])
    outcome = "promoted to champion" if record["promoted"] else "kept as challenger (not promoted)"
    lines += [
        "",
        f"**Window:** {len(window['batches'])} accepted batches, {window['first_date']} .. "
        f"{window['last_date']} ({window['days']} days up to {window['until'] or 'the newest'})",
        f"**Rows left out (flagged by the champion):** {window['rows_left_out']}",
        f"**Challenger:** `{record['version']}`, {outcome}",
        f"**Champion before / after:** `{record['champion_before']}` / `{record['champion_after']}`",
        "",
        "**Why:**",
    ]
    lines += [f"- {reason}" for reason in record["gate"]["reasons"]]
    if record["report"]:
        lines += ["", f"Evaluation report: `{record['report']}`"]
    return "\n".join(lines) + "\n"


def _publish(record: dict[str, Any], options: Any) -> None:
    publish_record_task(
        record,
        record["record"],
        retrain_markdown(record),
        artifact_key(record["dataset"], "retrain"),
        f"aeflow retraining of {record['dataset']}: trigger {record['trigger']}",
        options,
    )


@flow(name="aeflow-retrain", log_prints=True, **API_WATCH_HOOKS)
def retrain_flow(
    config: str,
    until: str | None = None,
    trigger: str = "manual",
    trigger_reasons: list[str] | None = None,
    exclude_flagged: bool | None = None,
    promote: bool = True,
) -> dict[str, Any]:
    """Train a challenger on the accepted batches of the last ``retrain.window_days`` days up to
    ``until`` (YYYY-MM-DD; the newest accepted batch by default) and promote it only through the
    gate. ``trigger`` says why (drift, model_age, schedule, manual) and ``trigger_reasons`` the
    details; ``exclude_flagged`` overrides ``retrain.exclude_flagged``; ``promote=False`` records
    the gate's decision without applying it. Returns the retraining record.
    """
    logger = get_run_logger()
    cfg = load_config(config)
    check_config_columns(cfg, against_model=False, suite_required=False)
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    opts = cfg.storage.options
    window_days = cfg.retrain.window_days or cfg.training.window_days
    leave_out_flagged = cfg.retrain.exclude_flagged if exclude_flagged is None else exclude_flagged
    registry = ModelRegistry(layout.models, opts)
    run = new_run_id()
    run_dir = layout.reports(run)
    record: dict[str, Any] = {
        "dataset": cfg.dataset,
        "run": run,
        "trigger": trigger,
        "trigger_reasons": list(trigger_reasons or []),
        "champion_before": registry.champion(),
    }

    window = training_window_task(layout.root, cfg.dataset, window_days, until, opts)
    record["window"] = {
        "days": window_days,
        "until": until,
        "first_date": min(b["date"] for b in window) if window else None,
        "last_date": max(b["date"] for b in window) if window else None,
        "batches": [b["batch_id"] for b in window],
        "exclude_flagged": leave_out_flagged,
        "rows_before_filter": 0,
        "rows_left_out": 0,
    }
    if not window:
        if until:
            first = (parse_date(until, "until") - dt.timedelta(days=window_days - 1)).isoformat()
            span = f"dated {first}..{parse_date(until, 'until').isoformat()}"
        else:
            span = "yet"
        reason = (
            f"nothing to retrain on: no batch {span} has been validated and scored "
            f"(the {window_days}-day window); score batches first (`aeflow nightly` or "
            "`aeflow score`), then retrain"
        )
        # Not an error: an empty window is a normal state (a new dataset, a quiet period).
        logger.info("retraining skipped: %s", reason)
        record.update(
            version=None, promoted=False, decision="skipped", reason=reason, gate=None,
            champion_after=registry.champion(), train_rows=0, metrics=None, evaluation=None,
            report=None,
        )  # fmt: skip
        record["record"] = join(run_dir, RECORD_FILE)
        _publish(record, opts)
        publish_result(
            "retrain", cfg.dataset, f"{cfg.dataset} retraining skipped, {reason}",
            {"version": None, "decision": "skipped", "trigger": trigger},
        )  # fmt: skip
        return record

    batch_ids = [b["batch_id"] for b in window]
    result = train_evaluate_gate(
        cfg,
        [b["path"] for b in window],
        batch_ids,
        promote,
        run=run,
        flagged_window=window if leave_out_flagged else None,
        gate_context={"trigger": trigger},
    )
    record["window"]["rows_before_filter"] = result["rows_before_filter"]
    record["window"]["rows_left_out"] = result["rows_left_out"]
    gate, version = result["gate"], result["version"]
    if gate["promoted"]:
        # The new champion's drift reference, built now while its training batches are at hand.
        ensure_drift_reference(cfg, layout, version)
    record.update(
        {
            "version": version,
            "reused": result["reused"],
            "promoted": gate["promoted"],
            "decision": gate["decision"],
            "reason": "; ".join(gate["reasons"]),
            "gate": gate,
            "champion_after": registry.champion(),
            "train_rows": result["metrics"]["train_rows"],
            "metrics": result["metrics"],
            "evaluation": result["evaluation"],
            "report": result["report"],
            "warnings": result["warnings"],
        }
    )
    record["record"] = join(run_dir, RECORD_FILE)
    _publish(record, opts)
    outcome = "promoted to champion" if gate["promoted"] else "kept as challenger"
    publish_result(
        "retrain",
        cfg.dataset,
        f"{cfg.dataset} retraining ({trigger}): {version} {outcome}: {record['reason']}",
        {"version": version, "decision": gate["decision"], "trigger": trigger},
    )
    logger.info(
        "retrained %s (trigger %s): %s; %s",
        version,
        trigger,
        "promoted" if gate["promoted"] else "kept as challenger",
        record["reason"],
    )
    return record
