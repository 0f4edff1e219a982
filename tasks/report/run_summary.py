"""Run summaries: the numbers a person checks after a score run (rows in, scored, quarantined,
flagged), as JSON, as Prefect artifacts and as the run's one-line result and event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import artifact_key
from tasks.fit_checks import flag_rate_warning
from tasks.incoming import IgnoredInput
from tasks.markdown import md_code, md_text
from tasks.records import QuarantineRecord, ScoreMarker
from tasks.settings import ThresholdSettings

if TYPE_CHECKING:
    from tasks.validation.outcome import ValidationOutcome


@dataclass(frozen=True)
class RunBatches:
    """What became of the batches of a score run: ``scored`` (score markers), ``skipped``
    (markers of batches scored before, or records of batches another run quarantined),
    ``quarantined`` (quarantine records), ``warnings`` (validation outcomes of batches scored
    with warnings)."""

    scored: Sequence[ScoreMarker] = ()
    skipped: Sequence[ScoreMarker | QuarantineRecord] = ()
    quarantined: Sequence[QuarantineRecord] = ()
    warnings: Sequence[ValidationOutcome] = ()


def summarize_score_run(
    dataset: str,
    model_version: str,
    batches: RunBatches,
    *,
    threshold: ThresholdSettings | None = None,
    ignored: Sequence[IgnoredInput] = (),
) -> dict[str, Any]:
    """Totals of a score run of ``dataset`` with ``model_version``. ``rows_in`` counts every row
    seen in this run, so rows_in == rows_scored + rows_quarantined holds for each run (skipped
    batches are not seen).

    A quarantined batch whose row count is unknown (its Parquet footer cannot be read) makes
    ``rows_quarantined`` and ``rows_in`` None (unknown), never a silent under-count; the ``*_known``
    fields keep the sum of the known counts and ``rows_unknown`` names those batches. ``ignored``:
    the paths under incoming/ that are not batches, each with its reason.

    ``flag_warnings`` (one line each) name a scored batch, or the run, whose flag rate is 0 or far
    from the threshold rule's target (``threshold``, see :func:`tasks.fit_checks.flag_rate_warning`).
    """
    # The summary is JSON (an artifact, the flow's result, the nightly record): the records'
    # storage form, and of a quarantined batch what a summary keeps (QuarantineRecord.summary).
    scored = [m.to_dict() for m in batches.scored]
    quarantined = [q.summary() for q in batches.quarantined]
    warnings = [w.to_dict() for w in batches.warnings]
    method, value = (threshold.method, threshold.value) if threshold else (None, None)
    rows_scored = sum(int(m["rows_out"]) for m in scored)
    unknown = [q["batch_id"] for q in quarantined if q.get("rows") is None]
    quarantined_known = sum(int(q["rows"]) for q in quarantined if q.get("rows") is not None)
    rows_in_known = sum(int(m["rows_in"]) for m in scored) + quarantined_known
    flagged = sum(int(m["flagged"]) for m in scored)
    return {
        "dataset": dataset,
        "model_version": model_version,
        "batches_scored": len(scored),
        "batches_skipped": len(batches.skipped),
        "batches_quarantined": len(quarantined),
        "batches_with_warnings": len(warnings),
        "rows_in": None if unknown else rows_in_known,
        "rows_in_known": rows_in_known,
        "rows_scored": rows_scored,
        "rows_quarantined": None if unknown else quarantined_known,
        "rows_quarantined_known": quarantined_known,
        "rows_unknown": unknown,
        "rows_flagged": flagged,
        "flagged_share": flagged / rows_scored if rows_scored else 0.0,
        "scored": scored,
        "skipped": [s.batch_id for s in batches.skipped],
        "quarantined": quarantined,
        "warnings": warnings,
        "flag_warnings": _flag_warnings(scored, method, value),
        "ignored": [i.to_dict() for i in ignored],
        "same_input": _same_input(batches.scored, batches.skipped),
    }


def _same_input(
    scored: Sequence[ScoreMarker], skipped: Sequence[ScoreMarker | QuarantineRecord]
) -> list[dict[str, Any]]:
    """The batches scored in this run whose input has the same bytes (sha256) as another batch's,
    scored earlier or in this run: [{"batch_id", "same_as": [earlier ids]}]. A day delivered
    twice under two names is two batches; their rows would be in scored/ twice."""
    seen: dict[str, list[str]] = {}
    for marker in skipped:
        sha = getattr(marker, "input_sha256", None)
        if sha:
            seen.setdefault(sha, []).append(marker.batch_id)
    copies = []
    for marker in sorted(scored, key=lambda m: m.batch_id):
        if not marker.input_sha256:
            continue
        earlier = seen.setdefault(marker.input_sha256, [])
        if earlier:
            copies.append({"batch_id": marker.batch_id, "same_as": sorted(earlier)})
        earlier.append(marker.batch_id)
    return copies


def rows_text(summary: dict[str, Any], key: str) -> str:
    """``summary[key]`` for people: the number, or "unknown (>= N; ...)" when a count is unknown."""
    value = summary.get(key)
    if value is not None:
        return str(value)
    known = summary.get(f"{key}_known", 0)
    batches = summary.get("rows_unknown") or []
    return f"unknown (>= {known}; row count unreadable for {', '.join(map(str, batches))})"


def _flag_warnings(
    scored: Sequence[dict[str, Any]], method: str | None, value: float | None
) -> list[str]:
    """Per scored batch, and for the whole run when it scored several."""
    found = []
    for marker in scored:
        warning = flag_rate_warning(
            int(marker["flagged"]), int(marker["rows_out"]), method, value,
            f"batch {marker['batch_id']}",
        )  # fmt: skip
        if warning:
            found.append(warning)
    if len(scored) > 1:
        flagged = sum(int(m["flagged"]) for m in scored)
        rows = sum(int(m["rows_out"]) for m in scored)
        overall = flag_rate_warning(flagged, rows, method, value, "this run's scored rows")
        if overall:
            found.append(overall)
    return found


def score_summary_markdown(summary: dict[str, Any]) -> str:
    """The run summary artifact; every value from the data is escaped (tasks.markdown)."""
    lines = [
        f"# Score run: {md_text(summary['dataset'])}",
        "",
        f"Model version: {md_code(summary['model_version'])}",
        "",
        "| batches scored | skipped (already done) | quarantined | rows in | rows scored | rows quarantined | rows flagged | flagged share | inputs ignored |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {summary['batches_scored']} | {summary['batches_skipped']} | {summary['batches_quarantined']} "
        f"| {md_text(rows_text(summary, 'rows_in'))} | {summary['rows_scored']} "
        f"| {md_text(rows_text(summary, 'rows_quarantined'))} "
        f"| {summary['rows_flagged']} | {summary['flagged_share']:.2%} "
        f"| {len(summary.get('ignored') or [])} |",
    ]
    if summary["scored"]:
        lines += [
            "",
            "## Scored batches",
            "",
            "| batch | rows | flagged | output |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {md_text(m['batch_id'])} | {m['rows_out']} | {m['flagged']} "
            f"| {md_code(m['output'], in_table=True)} |"
            for m in summary["scored"]
        ]
    if summary["quarantined"]:
        lines += [
            "",
            "## Quarantined batches",
            "",
            "| batch | rows | reason | folder |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {md_text(q['batch_id'])} | {'unknown' if q.get('rows') is None else q['rows']} "
            f"| {md_text(q.get('reason', ''))} "
            f"| {md_code(q.get('quarantine_dir', ''), in_table=True)} |"
            for q in summary["quarantined"]
        ]
    if summary["warnings"]:
        lines += ["", "## Scored with warnings", ""]
        lines += [
            f"- {md_text(w['batch_id'])}: {md_text(w.get('reason', ''))}"
            for w in summary["warnings"]
        ]
    if summary.get("flag_warnings"):
        lines += ["", "## Flag rate", ""]
        lines += [f"- {md_text(w)}" for w in summary["flag_warnings"]]
    if summary.get("ignored"):
        lines += ["", "## Ignored (not batches)", "", "| path | reason |", "|---|---|"]
        lines += [
            f"| {md_code(i['path'], in_table=True)} | {md_text(i['reason'])} |"
            for i in summary["ignored"]
        ]
    return "\n".join(lines) + "\n"


def publish_score_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """Publish a :func:`summarize_score_run` summary as the run's Markdown artifact; returns it."""
    create_markdown_artifact(
        markdown=score_summary_markdown(summary),
        key=artifact_key(summary["dataset"], "score-summary"),
        description=f"aeflow score run summary for {summary['dataset']}",
    )
    return summary


score_summary_task = task(publish_score_summary, name="score-run-summary", cache_policy=NO_CACHE)


# The counts a run's result event carries (see publish_result).
RESULT_KEYS = (
    "model_version",
    "batches_scored",
    "batches_skipped",
    "batches_quarantined",
    "rows_in",
    "rows_scored",
    "rows_quarantined",
    "rows_flagged",
)


def score_line(summary: dict[str, Any]) -> str:
    """A score run in one line: batches scored / skipped / quarantined, rows flagged, and the
    inputs ignored (not batches)."""
    ignored = len(summary.get("ignored") or [])
    return (
        f"{summary['batches_scored']} scored, {summary['batches_skipped']} already scored, "
        f"{summary['batches_quarantined']} quarantined; {summary['rows_flagged']} of "
        f"{summary['rows_scored']} rows flagged ({summary['flagged_share']:.2%})"
        + (f"; {ignored} input(s) ignored" if ignored else "")
    )


def publish_result(kind: str, dataset: str, line: str, payload: dict[str, Any]) -> None:
    """Say what a flow run did in one line, as its last log line and as a Prefect event
    ``aeflow.<kind>.finished`` whose resource name is that line (so `prefect deployment run
    --watch` ends with the result, not only with the run's state), with the model version the run
    scored with or trained as a related resource (tasks.events). No-op outside a run."""
    from prefect.context import FlowRunContext

    from tasks.events import emit, run_finished, wait_until_sent

    if FlowRunContext.get() is None:
        return
    from prefect import get_run_logger

    get_run_logger().info("result: %s", line)
    version = payload.get("model_version") or payload.get("version")
    sent = emit(
        run_finished(
            kind, dataset, line, payload, model_version=None if version == "none" else version
        )
    )
    if sent:
        # The run's last event: once it is out, so is every event the run emitted before it.
        wait_until_sent()
