"""The report's HTML page and Prefect artifacts for fixed inputs, byte for byte.

The expected files in tests/golden/report/ were rendered by the report code before it was split
into the tasks.report package (the HTML an f-string then, a Jinja2 template now), so a change to
the template or its values that changes the page fails here. Figures are stand-in bytes: the page
only base64-embeds them. Regenerate after an intended change with
``AEFLOW_REGENERATE_REPORT_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_report_rendering.py``
and review the diff.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest

from tasks.anchors import ANCHORS
from tasks.report import METRICS_SCHEMA, SCHEMA_VERSION, validate_metrics
from tasks.report.figures import FIGURE_TITLES
from tasks.report.html_page import render_html
from tasks.report.markdown import comparison_table, report_markdown

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "report"
REGENERATE = os.environ.get("AEFLOW_REGENERATE_REPORT_GOLDEN") == "1"
FIGURES = {name: f"png bytes of {name}".encode() for name in FIGURE_TITLES}


def _labels(auroc: float, tp: int, fp: int) -> dict:
    positives, negatives = 20, 780
    return {
        "positives": positives,
        "negatives": negatives,
        "positive_share": positives / (positives + negatives),
        "auroc": auroc,
        "auprc": auroc / 2,
        "threshold": 3.25,
        "precision": tp / (tp + fp),
        "recall": tp / positives,
        "f1": 2 * tp / (2 * tp + fp + positives - tp),
        "false_positive_rate": fp / negatives,
        "confusion": {"tp": tp, "fp": fp, "tn": negatives - fp, "fn": positives - tp},
        "precision_at_k": {"k": positives, "precision": 0.55},
    }


def _reconstruction(mse: float) -> dict:
    columns = [
        ("amount", "numeric", mse * 1.5, None),
        ("merchant_risk_score", "numeric", mse * 0.5, None),
        ("channel <web & app>", "categorical", mse * 0.2, 0.93),
        ("country", "categorical", None, None),
    ]
    return {
        "rows": 780,
        "mse": mse,
        "rmse": mse**0.5,
        "mae": mse * 0.8,
        "rows_excluded_as_labelled_anomalies": 20,
        "per_column": [
            {
                "column": name,
                "kind": kind,
                "rows": 780,
                "mse": value,
                "rmse": None if value is None else value**0.5,
                "mae": None if value is None else value * 0.7,
                "accuracy": accuracy,
            }
            for name, kind, value, accuracy in columns
        ],
    }


def _scores(threshold: float, flag_rate: float) -> dict:
    return {
        "rows": 800,
        "mean": 1.2345678,
        "std": 0.87654,
        "p50": 0.9,
        "p90": 2.1,
        "p99": 4.4,
        "max": 123456.789,
        "threshold": threshold,
        "flag_rate": flag_rate,
        "normal_flag_rate": 0.01,
        "percentile_ks": 0.0345,
    }


def labelled_metrics() -> dict:
    """A labelled run that beat its champion, with every optional section present."""
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": "cards<&>",
        "run": "20260105T010203Z-abc123",
        "created_at": "2026-01-05T01:02:03+00:00",
        "model": {
            "version": "v0002-2026-01-05",
            "threshold_method": "fpr",
            "threshold_value": 0.01,
            "threshold": 3.25,
            "latent_dim": 8,
            "n_members": 3,
            "columns": {
                "numeric": ["amount", "merchant_risk_score"],
                "categorical": ["channel <web & app>", "country"],
            },
        },
        "split": {
            "method": "time",
            "train_rows": 3200,
            "holdout_rows": 800,
            "holdout_fraction": 0.2,
            "seed": 0,
            "timestamp_column": "event_time",
            "label_column": "is_injected_anomaly",
            "label_note": None,
            "train_start": "2026-01-01T00:00:00+00:00",
            "train_end": "2026-01-04T23:59:59+00:00",
            "holdout_start": "2026-01-05T00:00:00+00:00",
            "holdout_end": "2026-01-05T23:59:59+00:00",
            "evaluation_train_rows": 3200,
        },
        "training": {
            "epochs": 40,
            "calibration": {
                "method": "fpr",
                "value": 0.01,
                "source": "validation",
                "rows": 320,
                "validation_rows": 320,
                "expected_tail_rows": 3.2,
                "note": None,
            },
            "fit_seconds": 12.3456,
            "train_rows": 2880,
            "validation_rows": 320,
            "epochs_run": 17,
            "best_epoch": 12,
            "train_loss": [1.5, 1.1, None, 0.9],
            "val_loss": [1.6, 1.2, 1.0, 0.95],
        },
        "reconstruction": _reconstruction(0.123456),
        "scores": _scores(3.25, 0.0125),
        "labels": _labels(0.9123, 11, 9),
        "threshold_policies": [
            {
                "method": "fpr",
                "value": 0.01,
                "configured": True,
                "threshold": 3.25,
                "flag_rate": 0.0125,
                "precision": 0.55,
                "recall": 0.55,
                "f1": 0.55,
            },
            {
                "method": "mean_std",
                "value": 3.0,
                "configured": False,
                "threshold": 2.9,
                "flag_rate": 0.02,
                "precision": 0.4,
                "recall": 0.6,
                "f1": 0.48,
            },
        ],
        "baselines": [
            {
                "name": name,
                "params": {"seed": 0},
                "fit_rows": 2880,
                "fit_seconds": 0.25 * (i + 1),
                "threshold_method": "fpr",
                "threshold_value": 0.01,
                "threshold": 1.5 + i,
                "flag_rate": 0.01 + i / 1000,
                "rank_correlation": 0.61234 - i / 10,
                "labels": _labels(0.8 - i / 100, 8 - i, 8 + i),
            }
            for i, name in enumerate(ANCHORS[:5])
        ],
        "explanations": {
            "shift_robust_std": 6.0,
            "rare_level_share": 0.05,
            "rows": 200,
            "top1": 0.915,
            "top3": 0.985,
            "direction": 0.97,
            "by_kind": {
                "numeric": {"rows": 120, "top1": 0.95},
                "categorical": {"rows": 80, "top1": 0.8625},
            },
            "by_column": {
                "amount": {"rows": 60, "top1": 0.97},
                "country": {"rows": 40, "top1": 0.75},
                "channel <web & app>": {"rows": 40, "top1": 0.85},
            },
            "typical": {"rows": 150, "top1": 0.94, "top3": 0.99, "by_kind": {"numeric": 0.97}},
        },
        "data_quality": {
            "warnings": [
                "column 'amount' drifted: PSI 0.31 > 0.25 (train vs holdout)",
                'label "is_injected_anomaly" share differs | train 2.0% & holdout <2.5%>',
            ],
            "class_balance": {
                "train": {"rows": 3200, "positives": 64, "share": 0.02},
                "holdout": {"rows": 800, "positives": 20, "share": 0.025},
            },
            "leakage": [
                {"column": "amount", "kind": "numeric", "auroc": 0.71, "rows": "all"},
                {"column": "country", "kind": "categorical", "auroc": 0.6, "rows": "holdout"},
            ],
            "shift": [
                {
                    "column": "amount",
                    "kind": "numeric",
                    "psi": 0.31234,
                    "null_share_train": 0.0,
                    "null_share_holdout": 0.0125,
                },
                {
                    "column": "country",
                    "kind": "categorical",
                    "psi": None,
                    "null_share_train": None,
                    "null_share_holdout": 0.5,
                },
            ],
        },
        "champion": {
            "version": "v0001-2026-01-01",
            "reconstruction": _reconstruction(0.2),
            "scores": _scores(3.0, 0.02),
            "labels": _labels(0.88, 10, 12),
            "error": None,
        },
        "gate": {
            "decision": "promote",
            "reasons": ["reconstruction MSE 0.1235 <= champion 0.2 + margin 0.05 (it's better)"],
            "comparisons": [
                {
                    "metric": "reconstruction_mse",
                    "challenger": 0.123456,
                    "champion": 0.2,
                    "margin": 0.05,
                    "limit": 0.25,
                    "passed": True,
                }
            ],
            "champion_version": "v0001-2026-01-01",
            "reconstruction_margin": 0.05,
            "auroc_margin": 0.01,
            "applied": True,
            "champion_before": "v0001-2026-01-01",
            "champion_after": "v0002-2026-01-05",
            "promoted": True,
        },
        "figures": list(FIGURE_TITLES),
        "files": {
            "report": "report.html",
            "metrics": "metrics.json",
            "holdout_scores": "holdout_scores.parquet",
        },
    }


def unlabelled_metrics() -> dict:
    """No labels, a random split, a champion that could not be evaluated, a refused gate, no
    explanation check and a fallback calibration."""
    metrics = labelled_metrics()
    metrics["labels"] = None
    for baseline in metrics["baselines"]:
        baseline["labels"] = None
    for policy in metrics["threshold_policies"]:
        for key in ("precision", "recall", "f1"):
            del policy[key]
    metrics["split"].update(timestamp_column=None, label_column=None, seed=7, method="random")
    metrics["training"]["calibration"].update(source="fit", rows=3200, note="too few rows")
    metrics["explanations"] = None
    metrics["data_quality"].update(warnings=[], class_balance=None, leakage=[])
    metrics["champion"] = {
        "version": "v0001-2026-01-01",
        "reconstruction": None,
        "scores": None,
        "labels": None,
        "error": "its columns <differ>: 'country' missing",
    }
    metrics["gate"].update(decision="refuse", promoted=False, champion_after="v0001-2026-01-01")
    metrics["figures"] = list(FIGURE_TITLES)[:4]
    return metrics


def not_applied_metrics() -> dict:
    """A first model (no champion) whose gate said promote with promotion off."""
    metrics = unlabelled_metrics()
    metrics["champion"] = None
    metrics["gate"].update(decision="promote", applied=False, champion_after=None)
    metrics["training"]["calibration"] = None
    return metrics


CASES = {
    "labelled": labelled_metrics,
    "unlabelled": unlabelled_metrics,
    "not_applied": not_applied_metrics,
}


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from the reviewed rendering in {path}"


@pytest.mark.parametrize("case", list(CASES))
def test_the_fixed_inputs_follow_the_schema(case):
    validate_metrics(CASES[case]())


@pytest.mark.parametrize("case", list(CASES))
def test_the_html_page_is_the_reviewed_rendering(case):
    metrics = CASES[case]()
    figures = {name: FIGURES[name] for name in metrics["figures"]}
    _check_golden(f"{case}.html", render_html(metrics, figures))


@pytest.mark.parametrize("case", list(CASES))
def test_the_artifacts_are_the_reviewed_rendering(case):
    metrics = CASES[case]()
    markdown = report_markdown(metrics, "s3://bucket/reports/cards/run/report.html")
    _check_golden(f"{case}.md", markdown)
    table = json.dumps(comparison_table(metrics), indent=1, sort_keys=True) + "\n"
    _check_golden(f"{case}.table.json", table)


def test_every_value_from_the_data_is_escaped_in_the_page():
    metrics = labelled_metrics()
    page = render_html(metrics, {})
    assert "cards<&>" not in page and "cards&lt;&amp;&gt;" in page
    assert "<web & app>" not in page
    assert "&lt;differ&gt;" in render_html(unlabelled_metrics(), {})


def test_the_schema_file_names_the_anchors_figures_and_version_the_code_uses():
    properties = METRICS_SCHEMA["properties"]
    assert properties["schema_version"] == {"const": SCHEMA_VERSION}
    assert properties["figures"]["items"]["enum"] == list(FIGURE_TITLES)
    baseline = properties["baselines"]["items"]["properties"]
    assert baseline["name"]["enum"] == list(ANCHORS)
    jsonschema.Draft202012Validator.check_schema(METRICS_SCHEMA)


def test_a_schema_violation_in_the_fixed_input_is_caught():
    broken = copy.deepcopy(labelled_metrics())
    broken["gate"]["decision"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        validate_metrics(broken)
