"""The `nightly` flow: score tonight's batches with the champion, measure drift, retrain when a
trigger fires.

Wiring only: every step is a task in tasks/. One night is::

    list incoming -> tonight's batches (a date, or everything not scored yet)
      -> validate each -> quarantine or score (exactly once per batch) -> score summary
      -> drift of each scored batch against the champion's training reference -> drift report
      -> retraining triggers (drift, champion age) -> `retrain` subflow when one fires
      -> nightly summary (JSON under <root>/reports/<dataset>/nightly/ and a Prefect artifact)
"""

from __future__ import annotations

import datetime as dt
from operator import itemgetter
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from flows.config import load_config
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from flows.retrain import ensure_drift_reference, retrain_flow
from flows.score import raise_failures, validate_and_score, with_storage_retries
from models.registry import ModelRegistry
from tasks.drift import (
    champion_challenged_at,
    drift_artifact_task,
    measure_drift_task,
    retrain_triggers,
)
from tasks.io import StorageLayout, join, scan_incoming_task
from tasks.markdown import md_code, md_text
from tasks.reporting import (
    RESULT_KEYS,
    artifact_key,
    publish_record_task,
    publish_result,
    score_line,
    score_summary_task,
)
from tasks.window import select_nightly_batches_task


def nightly_markdown(result: dict[str, Any]) -> str:
    """The night for people: what was scored, flagged, quarantined, drifted and retrained."""
    score = result["score"]
    lines = [
        f"# Nightly run: {md_text(result['dataset'])} ({md_text(result['night'])})",
        "",
        f"Scored with model {md_code(score['model_version'])}.",
        "",
        "| batches scored | scored before | quarantined | rows scored | rows flagged | drifted batches | retrained |",
        "|---|---|---|---|---|---|---|",
        f"| {score['batches_scored']} | {score['batches_skipped']} "
        f"| {score['batches_quarantined']} | {score['rows_scored']} "
        f"| {score['rows_flagged']} ({score['flagged_share']:.2%}) "
        f"| {sum(1 for d in result['drift'] if d['drifted'])} "
        f"| {'yes' if result['retrain'] else 'no'} |",
    ]
    if score["quarantined"]:
        lines += ["", "## Quarantined", ""]
        lines += [
            f"- {md_text(q['batch_id'])}: {md_text(q.get('reason', ''))} "
            f"({md_code(q.get('quarantine_dir', ''))})"
            for q in score["quarantined"]
        ]
    if result["drift"]:
        lines += ["", "## Drift", "", "| batch | status | drifted columns | report |"]
        lines += ["|---|---|---|---|"]
        lines += [
            f"| {md_text(d['batch_id'])} | {d['status']} "
            f"| {md_text(', '.join(d['drifted_columns']) or '-')} "
            f"| {md_code(d['report'], in_table=True)} |"
            for d in result["drift"]
        ]
    decision = result["retrain_decision"]
    lines += ["", "## Retraining", ""]
    if not decision["retrain"]:
        lines.append("No trigger fired.")
    else:
        lines += [f"- trigger: {md_text(reason)}" for reason in decision["reasons"]]
        retrained = result["retrain"]
        if retrained is None:
            lines.append("- not run: retraining was switched off for this run")
        else:
            outcome = "promoted to champion" if retrained["promoted"] else "kept as challenger"
            lines.append(f"- challenger `{retrained['version']}`: {outcome}: {retrained['reason']}")
    lines += ["", f"Champion after the run: `{result['champion_after']}`."]
    return "\n".join(lines) + "\n"


def nightly_line(result: dict[str, Any]) -> str:
    """The night in one line: scored, flagged, drift, retraining."""
    drifted = sum(1 for d in result["drift"] if d["drifted"])
    decision, retrained = result["retrain_decision"], result["retrain"]
    if not decision["retrain"]:
        retraining = "not triggered"
    elif retrained is None:
        retraining = "triggered, not run (switched off)"
    elif retrained["version"] is None:
        retraining = "skipped (nothing to train on)"
    else:
        outcome = "promoted" if retrained["promoted"] else "kept as challenger"
        retraining = f"{retrained['version']} {outcome}"
    failed = len(result.get("failures") or [])
    return (
        f"{result['dataset']} night {result['night']}: {score_line(result['score'])}"
        + (f"; {failed} failed to score" if failed else "")
        + f"; drift in {drifted} of {len(result['drift'])} batch(es); retraining {retraining}"
    )


@task(name="retrain-triggers", cache_policy=NO_CACHE)
def retrain_triggers_task(
    drift_reports: list[dict[str, Any]],
    champion_since: str | None,
    on_drift: bool,
    max_model_age_days: int | None,
) -> dict[str, Any]:
    return retrain_triggers(
        drift_reports,
        champion_since,
        dt.datetime.now(dt.UTC),
        on_drift,
        max_model_age_days,
    )


def _compact(report: dict[str, Any]) -> dict[str, Any]:
    keep = ("batch_id", "status", "drifted", "reasons", "drifted_columns", "warned_columns")
    return {
        **{k: report[k] for k in keep},
        "score_psi": report["score"]["psi"],
        "flag_rate": report["flag_rate"]["batch"],
        "reference_flag_rate": report["flag_rate"]["reference"],
        "report": report["report"],
    }


@flow(name="aeflow-nightly", log_prints=True, **API_WATCH_HOOKS)
def nightly_flow(config: str, date: str | None = None, retrain: bool = True) -> dict[str, Any]:
    """One night: score the night's batches (those dated ``date``, YYYY-MM-DD, by
    ``columns.batch_date``; or every batch not scored yet) with the champion, measure their drift,
    and retrain when drift or the champion's age calls for it (unless ``retrain`` is false).
    Returns the night's summary.
    """
    logger = get_run_logger()
    cfg = load_config(config)
    check_config_columns(cfg)
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    opts, cols = cfg.storage.options, cfg.columns
    night = date or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    registry = ModelRegistry(layout.models, opts)

    scan = with_storage_retries(scan_incoming_task, cfg)(layout.incoming, opts)
    selected = select_nightly_batches_task(
        scan["batches"], layout.root, cfg.dataset, date, opts, cols.batch_date, cols.timestamp
    )
    pending, scored_before = selected["pending"], selected["scored_before"]
    version = registry.resolve(None) if pending or scored_before else registry.champion()
    processed = validate_and_score(cfg, layout, pending, version or "", rejected=scan["rejected"])
    scored_before = sorted([*scored_before, *processed["skipped"]], key=itemgetter("batch_id"))
    score = score_summary_task(
        cfg.dataset,
        version or "none",
        processed["scored"],
        scored_before,
        processed["quarantined"],
        processed["warnings"],
        cfg.threshold.method,
        cfg.threshold.value,
        scan["ignored"],
    )

    # Drift is measured for every batch of the night scored by the current champion (also one
    # scored by an earlier run of this night); the reference is that model's training data.
    to_measure = [
        m for m in [*processed["scored"], *scored_before] if m.get("model_version") == version
    ]
    drift_reports: list[dict[str, Any]] = []
    if to_measure:
        profile = ensure_drift_reference(cfg, layout, version)
        d = cfg.drift
        drift_reports = measure_drift_task.map(
            batch_id=[m["batch_id"] for m in to_measure],
            batch_path=[m["input_path"] for m in to_measure],
            scored_path=[m["output"] for m in to_measure],
            root=unmapped(layout.root),
            dataset=unmapped(cfg.dataset),
            profile=unmapped(profile),
            missing_tokens=unmapped(cols.missing_values),
            psi_warn=unmapped(d.psi_warn),
            psi_retrain=unmapped(d.psi_retrain),
            flag_rate_ratio=unmapped(d.flag_rate_ratio),
            min_drifted_columns=unmapped(d.min_drifted_columns),
            epsilon=unmapped(d.epsilon),
            chunk_rows=unmapped(cfg.scoring.chunk_rows),
            options=unmapped(opts),
        ).result()
        for report in drift_reports:
            if report["drifted"]:
                logger.warning("drift in %s: %s", report["batch_id"], "; ".join(report["reasons"]))
    drift_artifact_task(cfg.dataset, drift_reports)

    since = (
        champion_challenged_at(registry.champion_state(), registry.entry(version))
        if version
        else None
    )
    decision = retrain_triggers_task(
        drift_reports, since, cfg.retrain.on_drift, cfg.retrain.max_model_age_days
    )
    retrained = None
    if decision["retrain"] and retrain:
        # The window ends with the night: its date, or the newest event date among its batches.
        until = date or max((m["date"] for m in to_measure), default=None)
        retrained = retrain_flow(
            config=config,
            until=until,
            trigger="+".join(decision["triggers"]),
            trigger_reasons=decision["reasons"],
        )
    result = {
        "dataset": cfg.dataset,
        "night": night,
        "date": date,
        "model_version": version,
        "score": score,
        "scored_before": [m["batch_id"] for m in scored_before],
        "drift": [_compact(r) for r in drift_reports],
        "retrain_decision": decision,
        "retrain": retrained,
        "champion_after": registry.champion(),
    }
    result["failures"] = processed["failures"]
    result["report"] = join(layout.reports("nightly"), f"{night}.json")
    publish_record_task(
        result,
        result["report"],
        nightly_markdown(result),
        artifact_key(result["dataset"], "nightly"),
        f"aeflow nightly run for {result['dataset']} ({result['night']})",
        opts,
    )
    publish_result(
        "nightly",
        cfg.dataset,
        nightly_line(result),
        {
            **{key: score[key] for key in RESULT_KEYS},
            "drifted_batches": sum(1 for d in drift_reports if d["drifted"]),
            "retrained": (retrained or {}).get("version"),
            "champion_after": result["champion_after"],
        },
    )
    raise_failures(processed)
    return result
