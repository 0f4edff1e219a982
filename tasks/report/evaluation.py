"""The evaluation report of a training run: rendered, written and published.

``<root>/reports/<dataset>/<run>/`` holds

- ``report.html``: headline numbers, the gate decision, warnings, and the plots (loss curves,
  score histogram with the threshold, per-column error, 2-D latent projection, ROC and PR curves
  when labelled) embedded as base64 PNG, so the file opens anywhere, offline, on its own;
- ``metrics.json``: every number of the report in a stable JSON layout, described by
  :data:`tasks.report.metrics.METRICS_SCHEMA` (also in docs/metrics.schema.json, explained in
  docs/evaluation.md);
- ``holdout_scores.parquet`` (written by the evaluation) and ``holdout.parquet``, the rows both the
  challenger and the champion were evaluated on.

Where the report is, is recorded in the model's registry entry by
:func:`tasks.registry.record_report` (registry writes live with the registry's tasks).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import artifact_key
from tasks.io import Storage, read_table, write_json_atomic, write_text_atomic
from tasks.records import ChampionEvaluation, Evaluation, GateDecision
from tasks.report.figures import render_figures
from tasks.report.html_page import render_html
from tasks.report.markdown import comparison_table, report_markdown
from tasks.report.metrics import METRICS_FILE, REPORT_FILE, build_metrics


def write_report(
    *, metrics: dict[str, Any], rows: pd.DataFrame, run: str, storage: Storage
) -> dict[str, Any]:
    """Render the figures, then write metrics.json and report.html into the run's report folder
    (``reports/<dataset>/<run>/``).

    ``metrics`` comes from :func:`build_metrics` (its ``figures`` list is filled in here); ``rows``
    is the holdout_scores frame of the evaluation. Returns ``{"html", "metrics", "figures"}``.
    """
    figures = render_figures(metrics, rows)
    metrics = {**metrics, "figures": list(figures)}
    options = storage.options
    metrics_url = write_json_atomic(metrics, storage.report_file(run, METRICS_FILE), options)
    page = render_html(metrics, figures)
    html_url = write_text_atomic(page, storage.report_file(run, REPORT_FILE), options)
    return {"html": html_url, "metrics": metrics_url, "figures": list(figures)}


def _publish(written: dict[str, Any], dataset: str, run: str) -> None:
    """The report's Markdown and table artifacts, inside a Prefect run (outside one, the files
    are the record)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    create_markdown_artifact(
        markdown=written["markdown"],
        key=artifact_key(dataset, "evaluation"),
        description=f"aeflow evaluation of {dataset} run {run}",
    )
    create_table_artifact(
        table=written["table"],
        key=artifact_key(dataset, "evaluation-table"),
        description=f"autoencoder, champion and baselines on the holdout of {dataset} run {run}",
    )


def create_report(
    *,
    run: str,
    evaluation: Evaluation,
    champion: ChampionEvaluation | None,
    gate: GateDecision | None,
    storage: Storage,
) -> dict[str, Any]:
    """Write the report of training run ``run``: the challenger's ``evaluation``, the
    ``champion`` on the same holdout and the ``gate``'s decision. Inside a Prefect run it also
    publishes the Markdown and table artifacts. Returns ``{"html", "metrics", "figures",
    "markdown", "table"}`` (the last two are the artifacts' contents)."""
    metrics = build_metrics(
        storage.dataset,
        run,
        evaluation.metrics,
        champion.to_dict() if champion is not None else None,
        gate.to_dict() if gate is not None else None,
        figures=[],
    )
    path = evaluation.holdout_scores_path
    rows = read_table(path, storage.options).to_pandas() if path else pd.DataFrame()
    written = write_report(metrics=metrics, rows=rows, run=run, storage=storage)
    metrics["figures"] = written["figures"]
    written = {
        **written,
        "markdown": report_markdown(metrics, written["html"]),
        "table": comparison_table(metrics),
    }
    _publish(written, storage.dataset, run)
    return written


report_task = task(create_report, name="evaluation-report", cache_policy=NO_CACHE)
