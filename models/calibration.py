"""Threshold and percentile calibration from held-out scores.

The detector scores its validation rows (never used for gradient steps) after training. From those
scores it derives the flag threshold and a reference distribution that turns any score into a
percentile in [0, 1]: the share of validation rows scoring at or below it.

Small tables: an empirical tail needs rows in it. When fewer than :data:`MIN_TAIL_ROWS` validation
rows would lie above the threshold (80 validation rows cannot place a 1% threshold: it would be the
top score, and nothing would be flagged), :func:`calibrate` uses every row the detector was fitted
on (training + validation; their scores run a little low, so the threshold errs towards flagging
more), and when even those are too few, a log-normal fitted to their scores. It records which, on
how many rows, and why.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

THRESHOLD_METHODS = ("fpr", "quantile", "mean_std", "contamination", "fixed")
# Rows expected above an empirical threshold for it to be used (its tail has this many points).
MIN_TAIL_ROWS = 5
# Rows below which mean and standard deviation of validation scores are too noisy for mean_std.
MIN_MEAN_STD_ROWS = 30
# Enough points to resolve percentiles to ~0.03% while keeping calibration.json small.
MAX_REFERENCE_POINTS = 4097


def check_threshold(method: str, value: float) -> None:
    """Raise ``ValueError`` when ``(method, value)`` is not a valid threshold rule."""
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"threshold_method must be one of {THRESHOLD_METHODS}, got {method!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"threshold_value must be a finite number, got {value!r}")
    if method in ("fpr", "quantile") and not 0 < value < 1:
        raise ValueError(
            f"threshold_value for threshold_method={method!r} must be in (0, 1), got {value}"
        )
    if method == "contamination" and not 0 < value <= 0.5:
        raise ValueError(
            f"threshold_value for threshold_method='contamination' must be in (0, 0.5], got {value}"
        )
    if method == "mean_std" and value < 0:
        raise ValueError(
            f"threshold_value for threshold_method='mean_std' (number of standard deviations) "
            f"must be >= 0, got {value}"
        )


def fit_threshold(
    method: str, value: float, validation_scores: np.ndarray, fit_scores: np.ndarray
) -> float:
    """Return the score above which a row is flagged.

    Args:
        method: ``"fpr"``: flag at most a ``value`` share of validation rows (a target
            false-positive rate when validation rows are normal); ``"quantile"``: the ``value``
            quantile of validation scores; ``"mean_std"``: validation mean + ``value`` standard
            deviations; ``"contamination"``: flag a ``value`` share of all fit rows (training +
            validation, which may hold anomalies); ``"fixed"``: ``value`` itself.
        value: the method's parameter (see :func:`check_threshold`).
        validation_scores: (n_validation,) scores of the held-out rows.
        fit_scores: (n_fit,) scores of every row the detector was fitted on.
    """
    check_threshold(method, value)
    if method == "fixed":
        return float(value)
    if method == "mean_std":
        return float(np.mean(validation_scores) + value * np.std(validation_scores))
    if method == "contamination":
        return float(np.quantile(fit_scores, 1.0 - value, method="higher"))
    level = 1.0 - value if method == "fpr" else value
    return float(np.quantile(validation_scores, level, method="higher"))


def reference_scores(validation_scores: np.ndarray) -> np.ndarray:
    """Sorted reference distribution for :func:`percentile`: every validation score, or
    :data:`MAX_REFERENCE_POINTS` evenly spaced quantiles of them when there are more."""
    scores = np.sort(np.asarray(validation_scores, dtype=np.float64))
    if scores.size > MAX_REFERENCE_POINTS:
        scores = np.quantile(scores, np.linspace(0.0, 1.0, MAX_REFERENCE_POINTS))
    return scores


def percentile(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(n,) scores -> (n,) float64 in [0, 1]: share of the reference at or below each score."""
    ranks = np.searchsorted(reference, np.asarray(scores, dtype=np.float64), side="right")
    return ranks / float(reference.size)


def _tail_share(method: str, value: float) -> float | None:
    """The share of rows a method puts above the threshold, for the empirical methods."""
    if method in ("fpr", "contamination"):
        return float(value)
    if method == "quantile":
        return 1.0 - float(value)
    return None


def _lognormal_threshold(scores: np.ndarray, share: float) -> tuple[float, str]:
    """The score a log-normal (normal when some score is <= 0) fitted to ``scores`` exceeds with
    probability ``share``; returns (threshold, the distribution's name)."""
    scores = np.asarray(scores, dtype=np.float64)
    z = NormalDist().inv_cdf(1.0 - share)
    if scores.size and scores.min() > 0:
        logs = np.log(scores)
        return float(np.exp(logs.mean() + z * logs.std())), "log-normal"
    return float(scores.mean() + z * scores.std()), "normal"


def calibrate(
    method: str, value: float, validation_scores: np.ndarray, fit_scores: np.ndarray
) -> tuple[float, np.ndarray, dict[str, Any]]:
    """The threshold, the scores percentiles are taken against, and what they stood on.

    Like :func:`fit_threshold`, with a fallback for small tables (module docstring). Returns
    ``(threshold, reference scores (n,), record)`` with ``record`` = ``{"method", "value",
    "source": "validation" | "fit" | "log-normal" | "normal" | "fixed", "rows" (the rows the
    threshold stood on), "validation_rows", "expected_tail_rows" (rows of those above it at the
    requested rate; None for mean_std and fixed), "note" (why a fallback was used, or None)}``.
    """
    check_threshold(method, value)
    validation_scores = np.asarray(validation_scores, dtype=np.float64)
    fit_scores = np.asarray(fit_scores, dtype=np.float64)
    n_validation, n_fit = validation_scores.size, fit_scores.size
    share = _tail_share(method, value)
    record: dict[str, Any] = {
        "method": method,
        "value": float(value),
        "source": "validation",
        "rows": n_validation,
        "validation_rows": n_validation,
        "expected_tail_rows": None,
        "note": None,
    }
    if method == "fixed":
        record.update(source="fixed", rows=0)
        return float(value), validation_scores, record
    if method == "mean_std":
        if n_validation >= MIN_MEAN_STD_ROWS or n_fit <= n_validation:
            return (
                fit_threshold(method, value, validation_scores, fit_scores),
                validation_scores,
                record,
            )
        record.update(
            source="fit",
            rows=n_fit,
            note=f"only {n_validation} validation rows (fewer than {MIN_MEAN_STD_ROWS}) for a "
            f"mean and standard deviation: calibrated on the {n_fit} training and validation rows",
        )
        threshold = float(fit_scores.mean() + value * fit_scores.std())
        return threshold, fit_scores, record
    base, base_rows = (
        (fit_scores, n_fit) if method == "contamination" else (validation_scores, n_validation)
    )
    if share * base_rows >= MIN_TAIL_ROWS:
        record.update(rows=base_rows, source="fit" if method == "contamination" else "validation")
        record["expected_tail_rows"] = share * base_rows
        return (
            fit_threshold(method, value, validation_scores, fit_scores),
            validation_scores,
            record,
        )
    too_few = (
        f"only {base_rows} {'fit' if method == 'contamination' else 'validation'} rows: at a "
        f"{share:.2%} flag rate about {share * base_rows:.1f} would lie above the threshold "
        f"(at least {MIN_TAIL_ROWS} are needed)"
    )
    if method != "contamination" and share * n_fit >= MIN_TAIL_ROWS:
        level = 1.0 - share
        record.update(
            source="fit",
            rows=n_fit,
            expected_tail_rows=share * n_fit,
            note=f"{too_few}; calibrated on the {n_fit} training and validation rows instead "
            "(their scores run a little low: expect somewhat more flags than the target)",
        )
        return float(np.quantile(fit_scores, level, method="higher")), fit_scores, record
    threshold, family = _lognormal_threshold(fit_scores, share)
    record.update(
        source=family,
        rows=n_fit,
        expected_tail_rows=share * n_fit,
        note=f"{too_few}, and {n_fit} training and validation rows are too few as well; the "
        f"threshold is the {1 - share:.2%} point of a {family} fitted to their scores",
    )
    return threshold, fit_scores, record
