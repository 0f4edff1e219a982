"""Metrics of a detector's scores on holdout rows: against labels, as a distribution, and under
the common threshold policies beside the configured one (see docs/evaluation.md)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models import calibration
from models.label_thresholds import LABEL_THRESHOLD_METHODS, calibrate_from_labels

# Policies shown beside the configured one: (method, value); contamination uses the label share.
COMPARED_POLICIES = (("fpr", 0.01), ("fpr", 0.05), ("mean_std", 3.0))
# With labelled training rows, the label policies too (chosen there, applied to the holdout).
COMPARED_LABEL_POLICIES = (("max_f1", 0.0), ("target_precision", 0.9), ("target_recall", 0.9))


def json_number(value: Any) -> float | None:
    """A JSON-safe float (None for NaN/inf/None)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------------- labels
def label_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Metrics of (n,) scores against (n,) 0/1 labels, flags being ``scores > threshold``.

    AUROC and AUPRC are None when only one class is present. precision@k takes k = the number of
    labelled anomalies (the k highest scores; ties broken by row order).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    flags = scores > threshold
    positives, negatives = int(labels.sum()), int((~labels).sum())
    tp = int((flags & labels).sum())
    fp = int((flags & ~labels).sum())
    fn = positives - tp
    tn = negatives - fp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = positives > 0 and negatives > 0
    top_k = np.argsort(-scores, kind="stable")[:positives]
    return {
        "positives": positives,
        "negatives": negatives,
        "positive_share": json_number(positives / len(labels)) if len(labels) else None,
        "auroc": json_number(roc_auc_score(labels, scores)) if both else None,
        "auprc": json_number(average_precision_score(labels, scores)) if both else None,
        "threshold": json_number(threshold),
        "precision": json_number(precision),
        "recall": json_number(recall),
        "f1": json_number(f1),
        "false_positive_rate": json_number(fp / negatives) if negatives else None,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "precision_at_k": {
            "k": positives,
            "precision": json_number(labels[top_k].mean()) if positives else None,
        },
    }


def score_summary(
    scores: np.ndarray, percentiles: np.ndarray, threshold: float, labels: np.ndarray | None
) -> dict[str, Any]:
    """Distribution of the holdout scores, the flag rate and the percentile calibration.

    ``percentile_ks`` is the Kolmogorov-Smirnov distance between the ``anomaly_percentile`` of the
    normal rows (all rows without labels) and the uniform distribution it should follow when the
    holdout looks like the validation rows: 0 is perfect, 0.1 is a visible shift.
    ``normal_flag_rate`` is the share of those rows flagged (the empirical false-positive rate
    when labels exist).
    """
    scores = np.asarray(scores, dtype=np.float64)
    normal = np.ones(scores.size, dtype=bool) if labels is None else np.asarray(labels) == 0
    reference = np.sort(np.asarray(percentiles, dtype=np.float64)[normal])
    ks = None
    if reference.size:
        n = reference.size
        above = np.arange(1, n + 1) / n - reference
        below = reference - np.arange(n) / n
        ks = float(max(above.max(), below.max()))
    quantiles = np.quantile(scores, [0.5, 0.9, 0.99]) if scores.size else [None] * 3
    return {
        "rows": int(scores.size),
        "mean": json_number(scores.mean()) if scores.size else None,
        "std": json_number(scores.std()) if scores.size else None,
        "p50": json_number(quantiles[0]),
        "p90": json_number(quantiles[1]),
        "p99": json_number(quantiles[2]),
        "max": json_number(scores.max()) if scores.size else None,
        "threshold": json_number(threshold),
        "flag_rate": json_number((scores > threshold).mean()) if scores.size else None,
        "normal_flag_rate": json_number((scores[normal] > threshold).mean())
        if normal.any()
        else None,
        "percentile_ks": json_number(ks),
    }


# -------------------------------------------------------------------------- threshold policies
def configured_policy(detector: Any) -> tuple[str, float]:
    """(method, value) of the threshold rule the detector's threshold came from: a label method
    when one chose it, or fell back (its calibration record), else its label-free parameters."""
    calibrated = (getattr(detector, "metadata_", None) or {}).get("calibration") or {}
    if calibrated.get("method") in LABEL_THRESHOLD_METHODS:
        return calibrated["method"], float(calibrated["value"])
    return detector.threshold_method, float(detector.threshold_value)


def threshold_policies(
    detector: Any,
    holdout_scores: np.ndarray,
    labels: np.ndarray | None,
    fit_scores: np.ndarray,
    contamination: float | None = None,
    labelled: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """The configured threshold and the common alternatives, each calibrated the way the detector
    does it (on its validation score distribution; contamination on ``fit_scores``, the scores of
    training rows), with the holdout flag rate and, with labels, precision / recall / F1.

    ``contamination`` defaults to the holdout's label share (1% without labels). ``labelled``:
    (scores, 0/1 labels) of labelled rows other than the holdout (the training window's); with
    them the label policies of :data:`COMPARED_LABEL_POLICIES` are chosen there and applied to
    the holdout (``fitted_on`` says where each threshold was chosen).
    """
    validation = np.asarray(detector.reference_scores_, dtype=np.float64)
    if contamination is None:
        share = float(np.mean(labels)) if labels is not None and len(labels) else 0.0
        contamination = min(0.5, share) if share > 0 else 0.01
    configured = configured_policy(detector)
    candidates = [configured, *COMPARED_POLICIES, ("contamination", round(contamination, 6))]
    if labelled is not None:
        candidates += list(COMPARED_LABEL_POLICIES)
    rows, seen = [], set()
    for method, value in candidates:
        key = (method, 0.0 if method == "max_f1" else value)  # max_f1 has no value
        if key in seen:
            continue
        seen.add(key)
        fitted_on = "validation scores"
        if (method, value) == configured:
            threshold = float(detector.threshold_)
            fitted_on = "the model's calibration"
        elif method in LABEL_THRESHOLD_METHODS:
            threshold, _ = calibrate_from_labels(
                method, value, *labelled, min_anomalies=1, min_normals=1
            )
            fitted_on = "labelled training-window rows"
            if threshold is None:
                continue
        else:
            threshold = calibration.fit_threshold(method, value, validation, fit_scores)
            if method == "contamination":
                fitted_on = "training rows' scores"
        flags = holdout_scores > threshold
        row: dict[str, Any] = {
            "method": method,
            "value": float(value),
            "configured": (method, value) == configured,
            "threshold": json_number(threshold),
            "flag_rate": json_number(flags.mean()) if flags.size else None,
            "fitted_on": fitted_on,
        }
        if labels is not None:
            scored = label_metrics(labels, holdout_scores, threshold)
            row.update(precision=scored["precision"], recall=scored["recall"], f1=scored["f1"])
        rows.append(row)
    return rows
