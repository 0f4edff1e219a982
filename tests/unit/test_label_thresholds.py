"""Thresholds chosen from labels (models.label_thresholds): each method, fitted on a seeded sample
of labelled scores, hits its target on fresh rows from the same distribution; too few labels fall
back with a note."""

from __future__ import annotations

import numpy as np
import pytest

from models.detector_params import validation_split
from models.label_thresholds import (
    calibrate_from_labels,
    check_label_threshold,
    operating_points,
)

ANOMALY_SHARE = 0.05
TOLERANCE = 0.05


def labelled_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n,) scores and (n,) 0/1 labels: normal rows ~ N(0, 1), anomalies ~ N(2.5, 1), 5%
    anomalies (overlapping: no threshold separates them)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < ANOMALY_SHARE).astype(np.int8)
    scores = rng.normal(0.0, 1.0, n) + 2.5 * labels
    return scores, labels


def precision_recall(
    threshold: float, scores: np.ndarray, labels: np.ndarray
) -> tuple[float, float]:
    flags = scores > threshold
    true_flags = int((flags & (labels == 1)).sum())
    return true_flags / max(int(flags.sum()), 1), true_flags / int(labels.sum())


def best_f1(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(operating_points(scores, labels).f1.max())


FIT = labelled_scores(20_000, seed=1)
FRESH = labelled_scores(200_000, seed=2)


@pytest.mark.parametrize("target", [0.6, 0.8])
def test_target_precision_holds_on_fresh_rows(target):
    threshold, record = calibrate_from_labels(
        "target_precision", target, *FIT, min_anomalies=10, min_normals=10
    )
    assert record["target_reached"] and record["note"] is None
    assert record["operating_point"]["precision"] >= target  # on the rows it was chosen on
    precision, _ = precision_recall(threshold, *FRESH)
    assert precision == pytest.approx(target, abs=TOLERANCE)


@pytest.mark.parametrize("target", [0.5, 0.8])
def test_target_recall_holds_on_fresh_rows(target):
    threshold, record = calibrate_from_labels(
        "target_recall", target, *FIT, min_anomalies=10, min_normals=10
    )
    assert record["operating_point"]["recall"] >= target
    _, recall = precision_recall(threshold, *FRESH)
    assert recall == pytest.approx(target, abs=TOLERANCE)


def test_max_f1_is_close_to_the_best_f1_on_fresh_rows():
    threshold, record = calibrate_from_labels("max_f1", 0, *FIT, min_anomalies=10, min_normals=10)
    precision, recall = precision_recall(threshold, *FRESH)
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 == pytest.approx(best_f1(*FRESH), abs=0.03)
    # the record's operating point is the best F1 of the labelled rows
    assert record["operating_point"]["f1"] == pytest.approx(best_f1(*FIT))


def test_too_few_labelled_anomalies_give_no_threshold_and_say_why():
    scores, labels = labelled_scores(200, seed=3)
    threshold, record = calibrate_from_labels(
        "max_f1", 0, scores, labels, min_anomalies=50, min_normals=10
    )
    assert threshold is None and record["operating_point"] is None
    assert f"{int(labels.sum())} anomalies" in record["note"]
    assert "threshold.min_anomalies" in record["note"]


def test_an_unreachable_precision_uses_the_best_one_and_says_so():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    labels = np.array([0, 1, 0, 1, 0])
    threshold, record = calibrate_from_labels(
        "target_precision", 0.9, scores, labels, min_anomalies=1, min_normals=1
    )
    assert record["target_reached"] is False
    assert "no threshold reaches precision 90%" in record["note"]
    # the best precision is 2 of 4 (flag the top four); the threshold lies between 2.0 and 1.0
    assert record["operating_point"]["precision"] == pytest.approx(0.5)
    assert threshold == pytest.approx(1.5)


def test_tied_scores_are_never_split_and_thresholds_sit_between_scores():
    points = operating_points(np.array([3.0, 2.0, 2.0, 1.0]), np.array([1, 1, 0, 0]))
    assert points.flags.tolist() == [1, 3, 4]
    assert points.thresholds[:2].tolist() == [2.5, 1.5]
    assert points.thresholds[2] < 1.0  # every row flagged: just below the lowest score


def test_bad_targets_are_errors_naming_the_range():
    with pytest.raises(ValueError, match=r"share in \(0, 1\]"):
        check_label_threshold("target_precision", 90)
    with pytest.raises(ValueError, match="must be one of"):
        check_label_threshold("best", 0.5)


def test_the_validation_split_is_seeded_and_disjoint():
    first, rest = validation_split(100, 0.1, 7)
    again, _ = validation_split(100, 0.1, 7)
    assert first.tolist() == again.tolist() and first.size == 10
    assert sorted([*first, *rest]) == list(range(100))


def test_the_threshold_section_checks_label_methods():
    from pydantic import ValidationError

    from tasks.settings import ThresholdSettings

    settings = ThresholdSettings(method="target_precision", value=0.9)
    assert settings.uses_labels and settings.label_free == ("fpr", 0.01)
    assert ThresholdSettings(method="fpr", value=0.05).label_free == ("fpr", 0.05)
    with pytest.raises(ValidationError, match="needs its target in threshold.value"):
        ThresholdSettings(method="target_recall")
    with pytest.raises(ValidationError, match=r"target share, in \(0, 1\]"):
        ThresholdSettings(method="target_recall", value=1.5)
    with pytest.raises(ValidationError, match="threshold.fallback_value for method 'fpr'"):
        ThresholdSettings(method="max_f1", fallback_value=0.9)
