"""The report's figures, as PNG bytes: loss curves, score histogram with the threshold, per-column
error, 2-D latent projection, and the ROC and PR curves when the holdout is labelled.

Plots use matplotlib's object API on the Agg canvas: no GUI, no pyplot global state, safe in
Prefect's worker threads.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

# Scatter plots draw at most this many points (flagged and labelled rows are always kept).
MAX_SCATTER_POINTS = 5000
# Every figure a report can hold, in the order it shows them (metrics.json lists the names).
FIGURE_TITLES = {
    "loss_curves": "Training and validation loss",
    "score_histogram": "Holdout anomaly scores and the threshold",
    "column_errors": "Reconstruction error per column (holdout)",
    "latent_projection": "Latent features, first two principal axes (holdout)",
    "roc_curve": "ROC curve (holdout)",
    "pr_curve": "Precision-recall curve (holdout)",
}


def _new_figure(width: float = 7.5, height: float = 4.0, columns: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, columns)
    return figure, axes


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def figure_loss_curves(training: dict[str, Any]) -> bytes:
    figure, ax = _new_figure()
    train = [np.nan if v is None else v for v in training["train_loss"]]
    val = [np.nan if v is None else v for v in training["val_loss"]]
    epochs = np.arange(1, len(train) + 1)
    ax.plot(epochs, train, marker="o", markersize=3, label="training rows")
    ax.plot(epochs, val, marker="o", markersize=3, label="validation rows")
    if training.get("best_epoch"):
        ax.axvline(training["best_epoch"], color="grey", linestyle="--", label="best epoch (kept)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean weighted reconstruction error per row")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(figure)


def figure_score_histogram(rows: pd.DataFrame, threshold: float) -> bytes:
    figure, ax = _new_figure()
    scores = rows["anomaly_score"].to_numpy(dtype=np.float64)
    positive = scores[scores > 0]
    # Scores are heavy-tailed: logarithmic bins show both the bulk and the tail.
    log_scale = positive.size == scores.size and scores.size and scores.max() / positive.min() > 50
    if log_scale:
        bins = np.geomspace(positive.min(), scores.max(), 60)
        ax.set_xscale("log")
    else:
        bins = 60
    if "label" in rows:
        labels = rows["label"].to_numpy()
        ax.hist(scores[labels == 0], bins=bins, alpha=0.7, label="labelled normal")
        ax.hist(scores[labels == 1], bins=bins, alpha=0.8, label="labelled anomaly")
    else:
        ax.hist(scores, bins=bins, alpha=0.8, label="holdout rows")
    ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("anomaly score (higher = more anomalous)")
    ax.set_ylabel("rows")
    ax.legend()
    return _png(figure)


def figure_column_errors(
    reconstruction: dict[str, Any], champion_reconstruction: dict[str, Any] | None
) -> bytes:
    columns = [c for c in reconstruction["per_column"] if c["mse"] is not None]
    columns.sort(key=lambda c: c["mse"])
    figure, ax = _new_figure(height=max(3.0, 0.3 * len(columns) + 1.2))
    positions = np.arange(len(columns))
    champion = {
        c["column"]: c["mse"] for c in (champion_reconstruction or {}).get("per_column", [])
    }
    height = 0.4 if champion else 0.8
    ax.barh(
        positions + (height / 2 if champion else 0),
        [c["mse"] for c in columns],
        height=height,
        label="this model",
    )
    if champion:
        ax.barh(
            positions - height / 2,
            [champion.get(c["column"]) or 0.0 for c in columns],
            height=height,
            label="champion",
        )
        ax.legend()
    ax.set_yticks(positions, [f"{c['column']} ({c['kind'][:3]})" for c in columns])
    ax.set_xlabel("MSE (numeric: in holdout standard deviations²; categorical: Brier score)")
    ax.grid(axis="x", alpha=0.3)
    return _png(figure)


def _scatter_sample(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    if len(rows) <= MAX_SCATTER_POINTS:
        return rows
    keep = rows["is_anomaly"].to_numpy().astype(bool)
    if "label" in rows:
        keep |= rows["label"].to_numpy() == 1
    others = np.flatnonzero(~keep)
    room = max(0, MAX_SCATTER_POINTS - int(keep.sum()))
    chosen = np.random.default_rng(seed).choice(others, size=min(room, others.size), replace=False)
    keep[chosen] = True
    return rows.loc[keep]


def figure_latent_projection(rows: pd.DataFrame) -> bytes:
    sample = _scatter_sample(rows)
    panels = [("is_anomaly", "flagged by the threshold", ("normal", "flagged"))]
    if "label" in rows:
        panels.append(("label", "label", ("labelled normal", "labelled anomaly")))
    figure, axes = _new_figure(width=5.0 * len(panels), height=4.5, columns=len(panels))
    axes = np.atleast_1d(axes)
    for ax, (column, title, names) in zip(axes, panels, strict=True):
        marks = sample[column].to_numpy().astype(bool)
        ax.scatter(
            sample["latent_x"][~marks],
            sample["latent_y"][~marks],
            s=6,
            alpha=0.4,
            color="tab:blue",
            label=names[0],
        )
        ax.scatter(
            sample["latent_x"][marks],
            sample["latent_y"][marks],
            s=14,
            alpha=0.9,
            color="tab:red",
            label=names[1],
        )
        ax.set_title(f"coloured by {title}")
        ax.set_xlabel("latent axis 1")
        ax.set_ylabel("latent axis 2")
        ax.legend(loc="best")
    return _png(figure)


def _score_columns(rows: pd.DataFrame) -> list[tuple[str, str]]:
    columns = [("autoencoder", "anomaly_score")]
    columns += [
        (name.removeprefix("score_").replace("_", " "), name)
        for name in rows.columns
        if name.startswith("score_")
    ]
    return columns


def _operating_points(ax, policies: list[dict[str, Any]]) -> None:
    """Each threshold policy's (recall, precision) on the holdout, marked on the PR curve (the
    configured one as a star)."""
    markers = "osD^vP<>"
    for number, policy in enumerate(p for p in policies if p.get("precision") is not None):
        value = "" if policy["method"] == "max_f1" else f" {policy['value']:g}"
        ax.scatter(
            [policy["recall"]],
            [policy["precision"]],
            marker="*" if policy["configured"] else markers[number % len(markers)],
            s=160 if policy["configured"] else 45,
            edgecolors="black",
            linewidths=0.6,
            zorder=3,
            label=f"{policy['method']}{value}" + (" (configured)" if policy["configured"] else ""),
        )


def _curve_figure(
    rows: pd.DataFrame, kind: str, policies: list[dict[str, Any]] | None = None
) -> bytes:
    """One curve per score column against the label: ``kind`` "roc" (false-positive rate against
    recall, with the diagonal) or "pr" (recall against precision, with the label share and each
    threshold policy's operating point)."""
    from sklearn import metrics

    figure, ax = _new_figure(width=5.5, height=5.0)
    labels = rows["label"].to_numpy()
    for name, column in _score_columns(rows):
        if kind == "roc":
            x, y, _ = metrics.roc_curve(labels, rows[column])
            summary = f"AUROC {metrics.roc_auc_score(labels, rows[column]):.3f}"
        else:
            y, x, _ = metrics.precision_recall_curve(labels, rows[column])
            summary = f"AUPRC {metrics.average_precision_score(labels, rows[column]):.3f}"
        ax.plot(x, y, label=f"{name} ({summary})")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate (recall)")
        ax.legend(loc="lower right")
    else:
        ax.axhline(labels.mean(), color="grey", linestyle=":", label="chance (label share)")
        _operating_points(ax, policies or [])
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left", fontsize="small")
    ax.grid(alpha=0.3)
    return _png(figure)


def render_figures(metrics: dict[str, Any], rows: pd.DataFrame) -> dict[str, bytes]:
    """{figure name: PNG bytes}; the ROC and PR curves only when the holdout has both classes."""
    figures = {
        "loss_curves": figure_loss_curves(metrics["training"]),
        "score_histogram": figure_score_histogram(rows, metrics["model"]["threshold"]),
        "column_errors": figure_column_errors(
            metrics["reconstruction"], (metrics.get("champion") or {}).get("reconstruction")
        ),
        "latent_projection": figure_latent_projection(rows),
    }
    labels = metrics.get("labels")
    if labels and labels["positives"] and labels["negatives"]:
        figures["roc_curve"] = _curve_figure(rows, "roc")
        figures["pr_curve"] = _curve_figure(rows, "pr", metrics.get("threshold_policies"))
    return figures
