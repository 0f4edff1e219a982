"""The evaluation report for Prefect: the Markdown artifact (headline numbers, the gate, a link to
report.html) and the table artifact (the autoencoder, the champion and the anchors)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from tasks.flag_precision import feedback_lines
from tasks.io import is_local
from tasks.markdown import md_text
from tasks.report.headline import headline_rows
from tasks.report.metrics import REPORT_FILE


def _link(url: str) -> str:
    """A link a browser opens: a local path as a file:// URI, any other URL as it is."""
    if is_local(url) and not url.startswith("file://"):
        return Path(url).resolve().as_uri()
    return url


def report_markdown(metrics: dict[str, Any], html_url: str) -> str:
    """The Prefect markdown artifact: headline numbers, the gate and a link to the report."""
    gate = metrics.get("gate") or {}
    lines = [
        f"# Evaluation: {metrics['dataset']} run {metrics['run']}",
        "",
        f"Model `{metrics['model']['version']}`; report: [{REPORT_FILE}]({_link(html_url)}) "
        f"(`{html_url}`)",
        "",
    ]
    if gate:
        lines += [
            f"**Gate: {gate['decision']}** (applied: {gate['applied']}, champion now "
            f"`{gate['champion_after']}`)",
            "",
            *[f"- {reason}" for reason in gate["reasons"]],
            "",
        ]
    header = ["metric", "this model"]
    if (metrics.get("champion") or {}).get("reconstruction"):
        header.append("champion")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(html.unescape(str(c)) for c in row) + " |"
        for row in headline_rows(metrics)
    ]
    warnings = metrics["data_quality"]["warnings"]
    if warnings:
        lines += ["", "## Warnings", "", *[f"- {md_text(w)}" for w in warnings]]
    if metrics.get("feedback"):
        lines += feedback_lines(metrics["feedback"])
    return "\n".join(lines) + "\n"


def _row(
    model: str, mse: float | None, flag_rate: float, labels: dict[str, Any] | None
) -> dict[str, Any]:
    """A row of the table artifact: a model's reconstruction MSE (None: not an autoencoder), flag
    rate and label metrics on the holdout."""
    labels = labels or {}
    return {
        "model": model,
        "reconstruction_mse": mse,
        "flag_rate": flag_rate,
        "auroc": labels.get("auroc"),
        "auprc": labels.get("auprc"),
        "f1": labels.get("f1"),
    }


def comparison_table(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The Prefect table artifact: the autoencoder, the champion and the baselines on the holdout."""
    autoencoders = [(f"autoencoder {metrics['model']['version']}", metrics)]
    champion = metrics.get("champion") or {}
    if champion.get("reconstruction"):
        autoencoders.append((f"champion {champion['version']}", champion))
    table = [
        _row(
            name, found["reconstruction"]["mse"], found["scores"]["flag_rate"], found.get("labels")
        )
        for name, found in autoencoders
    ]
    table += [_row(b["name"], None, b["flag_rate"], b["labels"]) for b in metrics["baselines"]]
    return table
