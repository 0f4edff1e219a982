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
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.registry import ModelRegistry
from tasks.artifacts import artifact_key
from tasks.io import StorageOptions, join, read_table, write_json_atomic, write_text_atomic
from tasks.report.figures import render_figures
from tasks.report.html_page import render_html
from tasks.report.markdown import comparison_table, report_markdown
from tasks.report.metrics import METRICS_FILE, REPORT_FILE, build_metrics


def write_report(
    out_dir: str,
    metrics: dict[str, Any],
    rows: pd.DataFrame,
    options: StorageOptions = None,
) -> dict[str, Any]:
    """Render the figures, then write metrics.json and report.html into ``out_dir``.

    ``metrics`` comes from :func:`build_metrics` (its ``figures`` list is filled in here); ``rows``
    is the holdout_scores frame of the evaluation. Returns ``{"html", "metrics", "figures"}``.
    """
    figures = render_figures(metrics, rows)
    metrics = {**metrics, "figures": list(figures)}
    metrics_url = write_json_atomic(metrics, join(out_dir, METRICS_FILE), options)
    html_url = write_text_atomic(render_html(metrics, figures), join(out_dir, REPORT_FILE), options)
    return {"html": html_url, "metrics": metrics_url, "figures": list(figures)}


def create_report(
    dataset: str,
    run: str,
    evaluation: dict[str, Any],
    champion: dict[str, Any] | None,
    gate: dict[str, Any] | None,
    out_dir: str,
    models_root: str | None = None,
    options: StorageOptions = None,
) -> dict[str, Any]:
    """Write the report of a run and, with ``models_root``, record its location in the model's
    registry entry (``report``). Returns ``{"html", "metrics", "figures", "markdown", "table"}``
    (the last two are the Prefect artifacts' contents)."""
    metrics = build_metrics(dataset, run, evaluation, champion, gate, figures=[])
    path = evaluation.get("holdout_scores_path")
    rows = read_table(path, options).to_pandas() if path else pd.DataFrame()
    written = write_report(out_dir, metrics, rows, options)
    metrics["figures"] = written["figures"]
    if models_root is not None:
        ModelRegistry(models_root, options).update_entry(
            metrics["model"]["version"],
            report={"run": run, "html": written["html"], "metrics": written["metrics"]},
        )
    return {
        **written,
        "markdown": report_markdown(metrics, written["html"]),
        "table": comparison_table(metrics),
    }


@task(name="evaluation-report", cache_policy=NO_CACHE)
def report_task(
    dataset: str,
    run: str,
    evaluation: dict[str, Any],
    champion: dict[str, Any] | None,
    gate: dict[str, Any] | None,
    out_dir: str,
    models_root: str,
    options: StorageOptions = None,
) -> dict[str, Any]:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    written = create_report(dataset, run, evaluation, champion, gate, out_dir, models_root, options)
    create_markdown_artifact(
        markdown=written.pop("markdown"),
        key=artifact_key(dataset, "evaluation"),
        description=f"aeflow evaluation of {dataset} run {run}",
    )
    create_table_artifact(
        table=written.pop("table"),
        key=artifact_key(dataset, "evaluation-table"),
        description=f"autoencoder, champion and baselines on the holdout of {dataset} run {run}",
    )
    return written
