"""Threshold and percentile calibration from held-out scores.

The detector scores its validation rows (never used for gradient steps) after training. From those
scores it derives the flag threshold and a reference distribution that turns any score into a
percentile in [0, 1]: the share of validation rows scoring at or below it.
"""

from __future__ import annotations

import math

import numpy as np

THRESHOLD_METHODS = ("fpr", "quantile", "mean_std", "contamination", "fixed")
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
