"""The run records of the nightly and retrain flows for people: Markdown artifacts, one-line
results, and their publication (JSON under ``<root>/reports/<dataset>/``, a Prefect artifact, a
Prefect event). Flows assemble nothing themselves: they pass the records to these tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import artifact_key
from tasks.flag_precision import feedback_lines
from tasks.io import Storage, write_json_atomic
from tasks.markdown import md_code, md_text
from tasks.records import DriftReport, NightlyRecord, RetrainRecord, TrainingRun
from tasks.report.run_summary import RESULT_KEYS, publish_result, score_line


def _store_and_publish(
    record: dict[str, Any],
    storage: Storage,
    *,
    url: str,
    url_key: str,
    markdown: Callable[[dict[str, Any]], str],
    kind: str,
    description: str,
) -> dict[str, Any]:
    """Store ``record`` as JSON at ``url`` (kept in the record as ``record[url_key]``) and publish
    its ``markdown`` as the dataset's ``kind`` artifact; returns the stored record."""
    record = {**record, url_key: url}
    write_json_atomic(record, url, storage.options)
    create_markdown_artifact(
        markdown=markdown(record),
        key=artifact_key(record["dataset"], kind),
        description=description,
    )
    return record


# ------------------------------------------------------------------------------------ score
def announce_score(kind: str, summary: dict[str, Any], *, action: str, failed: int) -> str:
    """Say what a score or backfill run did (``action``: "scored", "backfill 2026-01-01..
    2026-01-07") in one line, as a Prefect event with the run's counts; returns the line.

    Not a task: a flow calls it as its last step, so the result is the run's last event (after
    every task's), the line `prefect deployment run --watch` ends with."""
    line = (
        f"{summary['dataset']} {action} with {summary['model_version']}: {score_line(summary)}"
        + (f"; {failed} failed to score" if failed else "")
    )
    publish_result(kind, summary["dataset"], line, {key: summary[key] for key in RESULT_KEYS})
    return line


# ------------------------------------------------------------------------------------ train
def announce_train(trained: TrainingRun) -> str:
    """Say what a train run did in one line (the version, whether it became the champion, the
    gate's reasons), as a Prefect event; returns the line (see :func:`announce_score`)."""
    version, gate = trained.model.version, trained.gate
    status = "champion" if gate.promoted else "registered, not promoted"
    if trained.model.reused:
        status = "identical to this registered version, reused"
    line = f"{trained.dataset} trained {version} ({status}): {'; '.join(gate.reasons)}"
    payload = {"version": version, "promoted": gate.promoted, "reused": trained.model.reused}
    publish_result("train", trained.dataset, line, payload)
    return line


def announce_tune(dataset: str, summary: dict[str, Any]) -> str:
    """Say what a tune run found in one line (the objective's best value against the config's
    defaults, the winner), as a Prefect event; returns the line (see :func:`announce_score`).
    ``summary``: the study's summary.json content (tasks.tuning.results)."""
    study, objective = summary["study"], summary["objective"]["name"]
    line = (
        f"{dataset} study {study}: {objective} best {summary['best_value']} "
        f"(config defaults {summary['default_value']}); winner: {summary['winner']}"
    )
    publish_result("tune", dataset, line, {"study": study, "best_value": summary["best_value"]})
    return line


# ------------------------------------------------------------------------------------ drift
def _fmt(value: float | None, digits: int = 3) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def drift_markdown(dataset: str, reports: Sequence[DriftReport]) -> str:
    """One night's drift reports as a Markdown artifact: a line per batch, then the top columns."""
    reports = [r.to_dict() for r in reports]
    lines = [f"# Drift: {md_text(dataset)}", ""]
    if not reports:
        return "\n".join([*lines, "No batch was scored tonight, so no drift was measured.", ""])
    lines += [
        "| batch | status | drifted columns | score PSI | flag rate (reference) | reasons |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        flag = r["flag_rate"]
        rate = "n/a" if flag["batch"] is None else f"{flag['batch']:.2%}"
        lines.append(
            f"| {md_text(r['batch_id'])} | **{r['status']}** "
            f"| {md_text(', '.join(r['drifted_columns']) or '-')} "
            f"| {_fmt(r['score']['psi'])} | {rate} ({flag['reference']:.2%}) "
            f"| {md_text('; '.join(r['reasons']) or '-')} |"
        )
    for r in reports:
        lines += [
            "",
            f"## {md_text(r['batch_id'])}: column PSI (reference model "
            f"{md_code(r['reference_version'])})",
            "",
            "| column | PSI | status | largest shift (reference -> batch share) |",
            "|---|---|---|---|",
        ]
        for c in r["columns"]:
            shift = c.get("largest_shift")
            moved = (
                f"{md_text(shift['bin'])}: {shift['reference_share']:.1%} -> "
                f"{shift['batch_share']:.1%}"
                if shift
                else "-"
            )
            lines.append(f"| {md_text(c['column'])} | {_fmt(c['psi'])} | {c['status']} | {moved} |")
    return "\n".join(lines) + "\n"


@task(name="drift-report", cache_policy=NO_CACHE)
def publish_drift_task(dataset: str, reports: list[DriftReport]) -> str:
    """Publish the night's drift reports as one Markdown artifact; returns the artifact's key."""
    key = artifact_key(dataset, "drift")
    create_markdown_artifact(
        markdown=drift_markdown(dataset, reports),
        key=key,
        description=f"aeflow drift against the champion's training data for {dataset}",
    )
    return key


# ---------------------------------------------------------------------------------- nightly
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
    lines += feedback_lines(result.get("feedback"))
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


@task(name="publish-nightly-record", cache_policy=NO_CACHE)
def publish_nightly_task(record: NightlyRecord, storage: Storage) -> dict[str, Any]:
    """Store the night's record as JSON under ``<root>/reports/<dataset>/nightly/<night>.json``
    and publish its Markdown as a Prefect artifact; returns the stored record (JSON, with its
    ``report`` path: the flow's result)."""
    return _store_and_publish(
        record.to_dict(),
        storage,
        url=storage.nightly_record(record.night),
        url_key="report",
        markdown=nightly_markdown,
        kind="nightly",
        description=f"aeflow nightly run for {record.dataset} ({record.night})",
    )


def announce_nightly(result: dict[str, Any]) -> None:
    """The night's result as one line and a Prefect event (see :func:`announce_score`)."""
    score = result["score"]
    publish_result(
        "nightly",
        result["dataset"],
        nightly_line(result),
        {
            **{key: score[key] for key in RESULT_KEYS},
            "drifted_batches": sum(1 for d in result["drift"] if d["drifted"]),
            "retrained": (result["retrain"] or {}).get("version"),
            "champion_after": result["champion_after"],
        },
    )


# ---------------------------------------------------------------------------------- retrain
RETRAIN_RECORD_FILE = "retrain.json"


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
        f"**Rows left out:** {window['rows_left_out']} ({window.get('flagged_left_out', 0)} "
        f"flagged by the champion, {window.get('confirmed_left_out', 0)} confirmed anomalies); "
        f"{window.get('false_positives_kept', 0)} flagged rows kept as analysts' false positives",
        f"**Challenger:** `{record['version']}`, {outcome}",
        f"**Champion before / after:** `{record['champion_before']}` / `{record['champion_after']}`",
        "",
        "**Why:**",
    ]
    lines += [f"- {reason}" for reason in record["gate"]["reasons"]]
    if record["report"]:
        lines += ["", f"Evaluation report: `{record['report']}`"]
    return "\n".join(lines) + "\n"


@task(name="publish-retrain-record", cache_policy=NO_CACHE)
def publish_retrain_task(record: RetrainRecord, storage: Storage) -> dict[str, Any]:
    """Store the retraining record as JSON under ``<root>/reports/<dataset>/<run>/retrain.json``
    and publish its Markdown as a Prefect artifact; returns the stored record (JSON, with its
    ``record`` path: the retrain flow's result)."""
    return _store_and_publish(
        record.to_dict(),
        storage,
        url=storage.report_file(record.run, RETRAIN_RECORD_FILE),
        url_key="record",
        markdown=retrain_markdown,
        kind="retrain",
        description=f"aeflow retraining of {record.dataset}: trigger {record.trigger}",
    )


def announce_retrain(record: dict[str, Any]) -> None:
    """The retraining's result as one line and a Prefect event (see :func:`announce_score`)."""
    dataset, trigger = record["dataset"], record["trigger"]
    if record["version"] is None:
        line = f"{dataset} retraining skipped, {record['reason']}"
    else:
        outcome = "promoted to champion" if record["promoted"] else "kept as challenger"
        line = (
            f"{dataset} retraining ({trigger}): {record['version']} {outcome}: {record['reason']}"
        )
    publish_result(
        "retrain",
        dataset,
        line,
        {"version": record["version"], "decision": record["decision"], "trigger": trigger},
    )
