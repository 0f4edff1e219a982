"""The evaluation report of a training run: one self-contained HTML file and metrics.json.

``<root>/reports/<dataset>/<run>/`` holds

- ``report.html``: headline numbers, the gate decision, warnings, and the plots (loss curves,
  score histogram with the threshold, per-column error, 2-D latent projection, ROC and PR curves
  when labelled) embedded as base64 PNG, so the file opens anywhere, offline, on its own;
- ``metrics.json``: every number of the report in a stable JSON layout, described by
  :data:`METRICS_SCHEMA` (also in docs/metrics.schema.json, explained in docs/evaluation.md);
- ``holdout_scores.parquet`` (written by the evaluation) and ``holdout.parquet``, the rows both the
  challenger and the champion were evaluated on.

Plots use matplotlib's object API on the Agg canvas: no GUI, no pyplot global state, safe in
Prefect's worker threads.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.registry import ModelRegistry
from tasks.anchors import ANCHORS
from tasks.fit_checks import calibration_text
from tasks.io import (
    StorageOptions,
    is_local,
    join,
    read_table,
    write_json_atomic,
    write_text_atomic,
)
from tasks.markdown import md_text
from tasks.reporting import artifact_key

SCHEMA_VERSION = 1
REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"
# Scatter plots draw at most this many points (flagged and labelled rows are always kept).
MAX_SCATTER_POINTS = 5000
FIGURE_TITLES = {
    "loss_curves": "Training and validation loss",
    "score_histogram": "Holdout anomaly scores and the threshold",
    "column_errors": "Reconstruction error per column (holdout)",
    "latent_projection": "Latent features, first two principal axes (holdout)",
    "roc_curve": "ROC curve (holdout)",
    "pr_curve": "Precision-recall curve (holdout)",
}


# ---------------------------------------------------------------------------------- the schema
def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(
    properties: dict[str, Any], optional: Sequence[str] = (), closed: bool = True
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(set(properties) - set(optional)),
        "additionalProperties": not closed,
    }


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


_NUMBER = {"type": "number"}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_INTEGER = {"type": "integer", "minimum": 0}
_STRING = {"type": "string"}
_STRING_OR_NULL = {"type": ["string", "null"]}
_SHARE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}

_LABEL_METRICS = _object(
    {
        "positives": _INTEGER,
        "negatives": _INTEGER,
        "positive_share": _SHARE,
        "auroc": _SHARE,
        "auprc": _SHARE,
        "threshold": _NUMBER_OR_NULL,
        "precision": _SHARE,
        "recall": _SHARE,
        "f1": _SHARE,
        "false_positive_rate": _SHARE,
        "confusion": _object({k: _INTEGER for k in ("tp", "fp", "tn", "fn")}),
        "precision_at_k": _object({"k": _INTEGER, "precision": _SHARE}),
    }
)
_RECONSTRUCTION = _object(
    {
        "rows": _INTEGER,
        "mse": _NUMBER_OR_NULL,
        "rmse": _NUMBER_OR_NULL,
        "mae": _NUMBER_OR_NULL,
        "rows_excluded_as_labelled_anomalies": _INTEGER,
        "per_column": _array(
            _object(
                {
                    "column": _STRING,
                    "kind": {"enum": ["numeric", "categorical"]},
                    "rows": _INTEGER,
                    "mse": _NUMBER_OR_NULL,
                    "rmse": _NUMBER_OR_NULL,
                    "mae": _NUMBER_OR_NULL,
                    "accuracy": _SHARE,
                }
            )
        ),
        "scales": {"type": "object", "additionalProperties": _NUMBER},
    },
    optional=["scales"],
)
_SCORES = _object(
    {
        "rows": _INTEGER,
        **{k: _NUMBER_OR_NULL for k in ("mean", "std", "p50", "p90", "p99", "max", "threshold")},
        "flag_rate": _SHARE,
        "normal_flag_rate": _SHARE,
        "percentile_ks": _SHARE,
    }
)
_COMPARISON = _object(
    {
        "metric": {"enum": ["reconstruction_mse", "auroc"]},
        "challenger": _NUMBER,
        "champion": _NUMBER,
        "margin": _NUMBER,
        "limit": _NUMBER,
        "passed": {"type": "boolean"},
    }
)
_TIME = _STRING_OR_NULL
_DEFINITIONS = {
    "label_metrics": _LABEL_METRICS,
    "reconstruction": _RECONSTRUCTION,
    "scores": _SCORES,
    "comparison": _COMPARISON,
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


METRICS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://aeflow.dev/schemas/metrics.schema.json",
    "title": "aeflow evaluation metrics (metrics.json)",
    "description": "Holdout evaluation of one training run; see docs/evaluation.md.",
    **_object(
        {
            "schema_version": {"const": SCHEMA_VERSION},
            "dataset": _STRING,
            "run": _STRING,
            "created_at": _STRING,
            "model": _object(
                {
                    "version": _STRING,
                    "threshold_method": {
                        "enum": ["fpr", "quantile", "mean_std", "contamination", "fixed"]
                    },
                    "threshold_value": _NUMBER,
                    "threshold": _NUMBER_OR_NULL,
                    "latent_dim": _INTEGER,
                    "n_members": _INTEGER,
                    "columns": _object(
                        {"numeric": _array(_STRING), "categorical": _array(_STRING)}
                    ),
                }
            ),
            "split": _object(
                {
                    "method": {"enum": ["time", "random"]},
                    "train_rows": _INTEGER,
                    "holdout_rows": _INTEGER,
                    "holdout_fraction": _NUMBER,
                    "seed": {"type": "integer"},
                    "timestamp_column": _STRING_OR_NULL,
                    "label_column": _STRING_OR_NULL,
                    "label_note": _STRING_OR_NULL,
                    "train_start": _TIME,
                    "train_end": _TIME,
                    "holdout_start": _TIME,
                    "holdout_end": _TIME,
                    "evaluation_train_rows": _INTEGER,
                }
            ),
            "training": _object(
                {
                    "epochs": _INTEGER,
                    "calibration": _nullable(
                        _object(
                            {
                                "method": _STRING,
                                "value": _NUMBER,
                                "source": {
                                    "enum": ["validation", "fit", "log-normal", "normal", "fixed"]
                                },
                                "rows": _INTEGER,
                                "validation_rows": _INTEGER,
                                "expected_tail_rows": _NUMBER_OR_NULL,
                                "note": _STRING_OR_NULL,
                            }
                        )
                    ),
                    "fit_seconds": _NUMBER_OR_NULL,
                    "train_rows": {"type": ["integer", "null"]},
                    "validation_rows": {"type": ["integer", "null"]},
                    "epochs_run": _INTEGER,
                    "best_epoch": _INTEGER,
                    "train_loss": _array(_NUMBER_OR_NULL),
                    "val_loss": _array(_NUMBER_OR_NULL),
                }
            ),
            "reconstruction": _ref("reconstruction"),
            "scores": _ref("scores"),
            "labels": _nullable(_ref("label_metrics")),
            "threshold_policies": _array(
                _object(
                    {
                        "method": {
                            "enum": ["fpr", "quantile", "mean_std", "contamination", "fixed"]
                        },
                        "value": _NUMBER,
                        "configured": {"type": "boolean"},
                        "threshold": _NUMBER_OR_NULL,
                        "flag_rate": _SHARE,
                        "precision": _SHARE,
                        "recall": _SHARE,
                        "f1": _SHARE,
                    },
                    optional=["precision", "recall", "f1"],
                )
            ),
            "baselines": _array(
                _object(
                    {
                        "name": {"enum": list(ANCHORS)},
                        "params": {"type": "object"},
                        "fit_rows": _INTEGER,
                        "fit_seconds": _NUMBER,
                        "threshold_method": _STRING,
                        "threshold_value": _NUMBER,
                        "threshold": _NUMBER_OR_NULL,
                        "flag_rate": _SHARE,
                        "rank_correlation": {
                            "type": ["number", "null"],
                            "minimum": -1,
                            "maximum": 1,
                        },
                        "labels": _nullable(_ref("label_metrics")),
                    }
                )
            ),
            "explanations": _nullable(
                _object(
                    {
                        "shift_robust_std": _NUMBER,
                        "rare_level_share": _NUMBER,
                        "rows": _INTEGER,
                        "top1": _SHARE,
                        "top3": _SHARE,
                        "direction": _SHARE,
                        "by_kind": {"type": "object"},
                        "by_column": {"type": "object"},
                    }
                )
            ),
            "data_quality": _object(
                {
                    "warnings": _array(_STRING),
                    "class_balance": _nullable(
                        _object(
                            {
                                part: _object(
                                    {"rows": _INTEGER, "positives": _INTEGER, "share": _SHARE}
                                )
                                for part in ("train", "holdout")
                            }
                        )
                    ),
                    "leakage": _array(
                        _object(
                            {
                                "column": _STRING,
                                "kind": {"enum": ["numeric", "categorical"]},
                                "auroc": {"type": ["number", "null"], "minimum": 0.5, "maximum": 1},
                                "rows": {"enum": ["all", "train", "holdout"]},
                            }
                        )
                    ),
                    "shift": _array(
                        _object(
                            {
                                "column": _STRING,
                                "kind": {"enum": ["numeric", "categorical"]},
                                "psi": _NUMBER_OR_NULL,
                                "null_share_train": _SHARE,
                                "null_share_holdout": _SHARE,
                            }
                        )
                    ),
                }
            ),
            "champion": _nullable(
                _object(
                    {
                        "version": _STRING,
                        "reconstruction": _nullable(_ref("reconstruction")),
                        "scores": _nullable(_ref("scores")),
                        "labels": _nullable(_ref("label_metrics")),
                        "error": _STRING_OR_NULL,
                    }
                )
            ),
            "gate": _nullable(
                _object(
                    {
                        "decision": {"enum": ["promote", "refuse"]},
                        "reasons": _array(_STRING),
                        "comparisons": _array(_ref("comparison")),
                        "champion_version": _STRING_OR_NULL,
                        "reconstruction_margin": _NUMBER,
                        "auroc_margin": _NUMBER,
                        "applied": {"type": "boolean"},
                        "champion_before": _STRING_OR_NULL,
                        "champion_after": _STRING_OR_NULL,
                        "promoted": {"type": "boolean"},
                    }
                )
            ),
            "figures": _array({"enum": list(FIGURE_TITLES)}),
            "files": _object(
                {"report": _STRING, "metrics": _STRING, "holdout_scores": _STRING_OR_NULL}
            ),
        }
    ),
    "$defs": _DEFINITIONS,
}


def validate_metrics(metrics: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``metrics`` does not follow :data:`METRICS_SCHEMA`
    (needs the ``jsonschema`` package, in the dev extra)."""
    import jsonschema

    jsonschema.Draft202012Validator(METRICS_SCHEMA).validate(metrics)


def build_metrics(
    dataset: str,
    run: str,
    evaluation: dict[str, Any],
    champion: dict[str, Any] | None,
    gate: dict[str, Any] | None,
    figures: Sequence[str],
    created_at: str | None = None,
) -> dict[str, Any]:
    """The metrics.json document: the challenger's evaluation, the champion's numbers on the same
    holdout, the gate record and the report's file names."""
    keys = [
        "model",
        "split",
        "training",
        "reconstruction",
        "scores",
        "labels",
        "threshold_policies",
        "baselines",
        "data_quality",
    ]
    holdout_scores = evaluation.get("holdout_scores_path")
    optional = {"explanations": evaluation.get("explanations")}
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "run": run,
        "created_at": created_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **{key: evaluation[key] for key in keys},
        **optional,
        "champion": champion,
        "gate": gate,
        "figures": list(figures),
        "files": {
            "report": REPORT_FILE,
            "metrics": METRICS_FILE,
            "holdout_scores": holdout_scores.rstrip("/").rsplit("/", 1)[-1]
            if holdout_scores
            else None,
        },
    }


# ------------------------------------------------------------------------------------- figures
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


def _curve_figure(rows: pd.DataFrame, kind: str) -> bytes:
    """One curve per score column against the label: ``kind`` "roc" (false-positive rate against
    recall, with the diagonal) or "pr" (recall against precision, with the label share)."""
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
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="upper right")
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
        figures["pr_curve"] = _curve_figure(rows, "pr")
    return figures


# ---------------------------------------------------------------------------------------- HTML
def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.3e}"
    return html.escape(str(value))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _table(header: Sequence[str], body: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in body)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _headline_rows(metrics: dict[str, Any]) -> list[list[str]]:
    champion = metrics.get("champion") or {}
    sources = [metrics, champion] if champion.get("reconstruction") else [metrics]

    def pick(source: dict[str, Any], section: str, key: str) -> Any:
        return (source.get(section) or {}).get(key)

    rows = [
        ["holdout rows", *[_fmt(pick(s, "scores", "rows")) for s in sources]],
        ["reconstruction MSE", *[_fmt(pick(s, "reconstruction", "mse")) for s in sources]],
        ["reconstruction RMSE", *[_fmt(pick(s, "reconstruction", "rmse")) for s in sources]],
        ["reconstruction MAE", *[_fmt(pick(s, "reconstruction", "mae")) for s in sources]],
        ["threshold", *[_fmt(pick(s, "scores", "threshold")) for s in sources]],
        ["flag rate", *[_pct(pick(s, "scores", "flag_rate")) for s in sources]],
        [
            "percentile calibration (KS)",
            *[_fmt(pick(s, "scores", "percentile_ks")) for s in sources],
        ],
    ]
    if metrics.get("labels"):
        for key, name in (
            ("auroc", "AUROC"),
            ("auprc", "AUPRC"),
            ("precision", "precision at the threshold"),
            ("recall", "recall at the threshold"),
            ("f1", "F1 at the threshold"),
            ("false_positive_rate", "false-positive rate"),
        ):
            rows.append([name, *[_fmt(pick(s, "labels", key)) for s in sources]])
        rows.append(
            [
                "precision@k (k = labelled anomalies)",
                *[
                    _fmt(((s.get("labels") or {}).get("precision_at_k") or {}).get("precision"))
                    for s in sources
                ],
            ]
        )
    return rows


def _explanation_section(check: dict[str, Any] | None) -> list[str]:
    """The planted-anomaly explanation check (tasks/explanation_check.py), or a line saying why
    it did not run."""
    title = "<h2>Explanations: planted single-column anomalies</h2>"
    if not check:
        return [
            title,
            "<p class='note'>Not run: no numeric column varies and no categorical column has a "
            "rare level to plant.</p>",
        ]
    kinds = check.get("by_kind") or {}
    rows = [
        ["all", check["rows"], _pct(check["top1"]), _pct(check["top3"])],
        *(
            [html.escape(kind), part["rows"], _pct(part["top1"]), ""]
            for kind, part in sorted(kinds.items())
        ),
    ]
    weak = sorted(
        (
            name
            for name, part in (check.get("by_column") or {}).items()
            if (part["top1"] or 0) < 0.9
        ),
    )
    return [
        title,
        "<p class='note'>In each sampled holdout row (not labelled anomalous) one column was "
        f"changed: a numeric value moved {check['shift_robust_std']:g} robust standard deviations "
        "up or down, or a categorical level replaced by the column's rarest one (columns whose "
        f"rarest level has at most {check['rare_level_share']:.0%} of the rows). Top-1: the "
        "planted column is the first of the row's top features. Direction right (numeric): "
        f"{_pct(check['direction'])}.</p>",
        _table(["planted", "rows", "top-1", "top-3"], rows, "numbers"),
        "<p class='note'>Columns below 90% top-1: "
        + html.escape(", ".join(weak) or "none")
        + "</p>",
    ]


def render_html(metrics: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The report as one HTML document; ``figures`` are embedded as base64 PNG ``<img>`` tags."""
    model, split, gate = metrics["model"], metrics["split"], metrics.get("gate")
    champion = metrics.get("champion") or {}
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>aeflow report: {esc(metrics['dataset'])} {esc(metrics['run'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Evaluation report: {esc(metrics['dataset'])}</h1>",
        f"<p class='meta'>run <code>{esc(metrics['run'])}</code> · model "
        f"<code>{esc(model['version'])}</code> · created {esc(metrics['created_at'])} · "
        f"<a href='{METRICS_FILE}'>metrics.json</a></p>",
    ]
    if gate:
        promoted = gate["promoted"]
        state = (
            "promoted"
            if promoted
            else ("refused" if gate["decision"] == "refuse" else "not applied")
        )
        verdict = {
            "promoted": "Promoted: this model is now the champion.",
            "refused": f"Refused: the champion stays {gate.get('champion_after') or '–'}.",
            "not applied": f"Gate decision '{gate['decision']}' not applied (promotion was off).",
        }[state]
        reasons = "".join(f"<li>{esc(r)}</li>" for r in gate["reasons"])
        parts.append(
            f"<div class='gate {state.replace(' ', '-')}'><strong>{esc(verdict)}</strong>"
            f"<ul>{reasons}</ul></div>"
        )
    warnings = metrics["data_quality"]["warnings"]
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
        parts.append(f"<div class='warnings'><strong>Warnings</strong><ul>{items}</ul></div>")

    header = ["metric", "this model"]
    if champion.get("reconstruction"):
        header.append(f"champion {champion['version']}")
    elif champion.get("error"):
        parts.append(
            f"<p class='note'>The champion {esc(champion['version'])} could not be evaluated on "
            f"this holdout: {esc(champion['error'])}</p>"
        )
    parts += ["<h2>Headline (holdout)</h2>", _table(header, _headline_rows(metrics), "numbers")]
    parts.append(
        "<p class='note'>Reconstruction errors are measured on the holdout rows not labelled "
        "anomalous: numeric columns in holdout standard deviations, categorical columns as the "
        "Brier score of the predicted level (MAE: 1 - probability of the observed level); the "
        "overall numbers average the columns. See docs/evaluation.md.</p>"
    )

    parts.append("<h2>Plots</h2>")
    for name, png in figures.items():
        encoded = base64.b64encode(png).decode("ascii")
        title = FIGURE_TITLES[name]
        parts.append(
            f"<figure id='fig-{name}'><img alt='{esc(title)}' data-figure='{name}' "
            f"src='data:image/png;base64,{encoded}'><figcaption>{esc(title)}</figcaption></figure>"
        )

    labels = metrics.get("labels")
    if labels:
        c = labels["confusion"]
        parts += [
            "<h2>Confusion matrix at the threshold</h2>",
            _table(
                ["", "flagged", "not flagged"],
                [
                    ["labelled anomaly", c["tp"], c["fn"]],
                    ["labelled normal", c["fp"], c["tn"]],
                ],
                "numbers",
            ),
        ]

    def label_cells(found: dict[str, Any] | None, keys: Sequence[str]) -> list[str]:
        # Without labels the label columns are left out rather than shown empty.
        return [_fmt((found or {}).get(key)) for key in keys] if labels else []

    baseline_rows = [
        [
            "autoencoder",
            _fmt(model["threshold"]),
            _pct(metrics["scores"]["flag_rate"]),
            *label_cells(labels, ("auroc", "auprc", "f1")),
            "1",
            _fmt(metrics["training"]["fit_seconds"]),
        ]
    ]
    for b in metrics["baselines"]:
        baseline_rows.append(
            [
                esc(b["name"].replace("_", " ")),
                _fmt(b["threshold"]),
                _pct(b["flag_rate"]),
                *label_cells(b["labels"], ("auroc", "auprc", "f1")),
                _fmt(b["rank_correlation"], 3),
                _fmt(b["fit_seconds"]),
            ]
        )
    label_header = ["AUROC", "AUPRC", "F1"] if labels else []
    parts += [
        "<h2>Anchors: classical detectors (same training rows, same preprocessing)</h2>",
        _table(
            ["model", "threshold", "flag rate", *label_header, "rank corr. with AE", "fit s"],
            baseline_rows,
            "numbers",
        ),
    ]
    parts += _explanation_section(metrics.get("explanations"))

    policy_rows = [
        [
            esc(p["method"]) + (" (configured)" if p["configured"] else ""),
            _fmt(p["value"]),
            _fmt(p["threshold"]),
            _pct(p["flag_rate"]),
            *label_cells(p, ("precision", "recall", "f1")),
        ]
        for p in metrics["threshold_policies"]
    ]
    policy_header = ["precision", "recall", "F1"] if labels else []
    parts += [
        "<h2>Threshold policies</h2>",
        "<p class='note'>Each threshold is calibrated on the model's validation scores "
        "(contamination: on the training rows' scores) and applied to the holdout.</p>",
        _table(
            ["policy", "value", "threshold", "holdout flag rate", *policy_header],
            policy_rows,
            "numbers",
        ),
    ]

    champion_columns = {
        c["column"]: c for c in (champion.get("reconstruction") or {}).get("per_column", [])
    }
    column_rows = [
        [
            esc(c["column"]),
            c["kind"],
            c["rows"],
            _fmt(c["mse"]),
            _fmt(c["rmse"]),
            _fmt(c["mae"]),
            _fmt(c["accuracy"]),
            _fmt((champion_columns.get(c["column"]) or {}).get("mse")),
        ]
        for c in metrics["reconstruction"]["per_column"]
    ]
    parts += [
        "<h2>Reconstruction per column</h2>",
        _table(
            ["column", "kind", "rows", "MSE", "RMSE", "MAE", "accuracy", "champion MSE"],
            column_rows,
            "numbers",
        ),
    ]

    quality = metrics["data_quality"]
    parts.append("<h2>Data quality</h2>")
    balance = quality["class_balance"]
    if balance:
        parts.append(
            _table(
                ["rows", "count", "labelled anomalies", "share"],
                [
                    [
                        part,
                        balance[part]["rows"],
                        balance[part]["positives"],
                        _pct(balance[part]["share"]),
                    ]
                    for part in ("train", "holdout")
                ],
                "numbers",
            )
        )
    if quality["leakage"]:
        parts += [
            "<h3>Single-feature AUROC against the label (leakage check)</h3>",
            _table(
                ["column", "kind", "AUROC", "measured on"],
                [
                    [esc(r["column"]), r["kind"], _fmt(r["auroc"]), r["rows"]]
                    for r in quality["leakage"][:15]
                ],
                "numbers",
            ),
        ]
    parts += [
        "<h3>Train-vs-holdout shift (PSI; &gt; 0.25 is significant)</h3>",
        _table(
            ["column", "kind", "PSI", "null share train", "null share holdout"],
            [
                [
                    esc(r["column"]),
                    r["kind"],
                    _fmt(r["psi"], 3),
                    _pct(r["null_share_train"]),
                    _pct(r["null_share_holdout"]),
                ]
                for r in quality["shift"]
            ],
            "numbers",
        ),
    ]

    training = metrics["training"]
    parts += [
        "<h2>Split and training</h2>",
        _table(
            ["", ""],
            [
                [
                    "holdout split",
                    esc(split["method"])
                    + (
                        f" on {esc(split['timestamp_column'])}"
                        if split["timestamp_column"]
                        else f" (seed {split['seed']})"
                    ),
                ],
                [
                    "training rows / holdout rows",
                    f"{split['train_rows']} / {split['holdout_rows']}",
                ],
                ["training period", f"{_fmt(split['train_start'])} – {_fmt(split['train_end'])}"],
                [
                    "holdout period",
                    f"{_fmt(split['holdout_start'])} – {_fmt(split['holdout_end'])}",
                ],
                [
                    "threshold policy",
                    f"{esc(model['threshold_method'])} {model['threshold_value']}",
                ],
                ["threshold calibrated on", esc(calibration_text(training.get("calibration")))],
                [
                    "epochs run (best) of the cap",
                    f"{training['epochs_run']} ({training['best_epoch']}) of "
                    f"{training.get('epochs', '?')}",
                ],
                ["fit seconds", _fmt(training["fit_seconds"])],
                ["latent features", model["latent_dim"]],
            ],
            "meta",
        ),
    ]
    parts.append("</body></html>")
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d232a;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#555}code{background:#f3f3f3;padding:0 .2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem}
th{background:#f6f6f6;text-align:left}table.numbers td{text-align:right}
table.numbers td:first-child{text-align:left}
.gate{padding:.6rem 1rem;border-radius:6px;margin:1rem 0}
.gate.promoted{background:#e7f6ea;border:1px solid #7cc48b}
.gate.refused{background:#fdecea;border:1px solid #e08a80}
.gate.not-applied{background:#eef2f8;border:1px solid #9fb3d1}
.warnings{background:#fff7e0;border:1px solid #e5c06b;padding:.6rem 1rem;border-radius:6px}
.note{color:#555;font-size:.9rem}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9rem}
"""


# ----------------------------------------------------------------------------------- writing
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


def _link(url: str) -> str:
    if is_local(url) and not url.startswith("file://"):
        from pathlib import Path

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
        for row in _headline_rows(metrics)
    ]
    warnings = metrics["data_quality"]["warnings"]
    if warnings:
        lines += ["", "## Warnings", "", *[f"- {md_text(w)}" for w in warnings]]
    return "\n".join(lines) + "\n"


def comparison_table(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The Prefect table artifact: the autoencoder, the champion and the baselines on the holdout."""
    labels = metrics.get("labels") or {}
    table = [
        {
            "model": f"autoencoder {metrics['model']['version']}",
            "reconstruction_mse": metrics["reconstruction"]["mse"],
            "flag_rate": metrics["scores"]["flag_rate"],
            "auroc": labels.get("auroc"),
            "auprc": labels.get("auprc"),
            "f1": labels.get("f1"),
        }
    ]
    champion = metrics.get("champion") or {}
    if champion.get("reconstruction"):
        table.append(
            {
                "model": f"champion {champion['version']}",
                "reconstruction_mse": champion["reconstruction"]["mse"],
                "flag_rate": champion["scores"]["flag_rate"],
                "auroc": (champion.get("labels") or {}).get("auroc"),
                "auprc": (champion.get("labels") or {}).get("auprc"),
                "f1": (champion.get("labels") or {}).get("f1"),
            }
        )
    for b in metrics["baselines"]:
        bl = b["labels"] or {}
        table.append(
            {
                "model": b["name"],
                "reconstruction_mse": None,
                "flag_rate": b["flag_rate"],
                "auroc": bl.get("auroc"),
                "auprc": bl.get("auprc"),
                "f1": bl.get("f1"),
            }
        )
    return table


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


def schema_json() -> str:
    """:data:`METRICS_SCHEMA` as the text of docs/metrics.schema.json."""
    import json

    return json.dumps(METRICS_SCHEMA, indent=2) + "\n"


if __name__ == "__main__":  # python -m tasks.report > docs/metrics.schema.json
    print(schema_json(), end="")
