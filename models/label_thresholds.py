"""Thresholds chosen from labels: the best F1, a target precision or a target recall.

The label-free methods of :mod:`models.calibration` place the threshold on the validation score
distribution alone. With labelled rows (a labelled validation share, or analysts' verdicts on
flagged rows) the threshold can be chosen for what a team cares about:

- ``max_f1``: the threshold with the highest F1 on the labelled rows (``value`` is not used);
- ``target_precision``: the lowest threshold (most anomalies caught) whose flags are at least a
  ``value`` share true anomalies on the labelled rows; when no threshold reaches it, the one with
  the highest precision, and the record says the target was not reached;
- ``target_recall``: the highest threshold (fewest flags) that flags at least a ``value`` share of
  the labelled anomalies.

Rows are flagged when their score is *above* the threshold (as everywhere in aeflow); a chosen
threshold lies halfway between the lowest flagged score and the next score below it, so it does not
sit on a labelled row's score.

Too few labels make these choices noise: with fewer than ``min_anomalies`` labelled anomalies or
``min_normals`` labelled normal rows, :func:`calibrate_from_labels` returns no threshold and a note
saying why; the caller keeps its label-free fallback threshold and records the note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

LABEL_THRESHOLD_METHODS = ("max_f1", "target_precision", "target_recall")


def check_label_threshold(method: str, value: float) -> None:
    """Raise ``ValueError`` when ``(method, value)`` is not a valid label threshold rule."""
    if method not in LABEL_THRESHOLD_METHODS:
        raise ValueError(
            f"label threshold method must be one of {LABEL_THRESHOLD_METHODS}, got {method!r}"
        )
    if method != "max_f1" and not (
        isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 1
    ):
        raise ValueError(
            f"the target of threshold method {method!r} must be a share in (0, 1], got {value!r}; "
            "e.g. 0.9 for 90%"
        )


@dataclass(frozen=True)
class OperatingPoints:
    """Every threshold the labelled rows allow, highest first: flagging the top ``flags[i]`` rows
    gives ``precision[i]``, ``recall[i]`` and ``f1[i]`` at ``thresholds[i]`` (each (n_points,))."""

    thresholds: np.ndarray
    flags: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    def point(self, index: int) -> dict[str, Any]:
        return {
            "threshold": float(self.thresholds[index]),
            "flags": int(self.flags[index]),
            "precision": float(self.precision[index]),
            "recall": float(self.recall[index]),
            "f1": float(self.f1[index]),
        }


def operating_points(scores: np.ndarray, labels: np.ndarray) -> OperatingPoints:
    """The precision-recall curve of (n,) scores against (n,) 0/1 labels, one point per distinct
    score (flag every row scoring at least it)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], labels[order]
    # The last row of each run of equal scores: a threshold cannot split tied rows.
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    flags = ends + 1
    true_flags = np.cumsum(hits)[ends]
    positives = max(int(labels.sum()), 1)
    precision = true_flags / flags
    recall = true_flags / positives
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    below = np.r_[ranked[ends[:-1] + 1], -np.inf]
    last = ranked[ends]
    # Halfway to the next lower score; below the lowest score, just under it.
    thresholds = np.where(np.isfinite(below), (last + below) / 2, np.nextafter(last, -np.inf))
    return OperatingPoints(thresholds, flags, precision, recall, f1)


def choose_threshold(
    method: str, value: float, scores: np.ndarray, labels: np.ndarray
) -> tuple[int, OperatingPoints, bool]:
    """The operating point ``method`` picks on labelled rows: ``(index into the points, the
    points, whether the target was reached)`` (max_f1 always reaches its aim)."""
    check_label_threshold(method, value)
    points = operating_points(scores, labels)
    if method == "max_f1":
        # argmax takes the first (highest) threshold among equal F1: fewer flags for the same F1.
        return int(np.argmax(points.f1)), points, True
    if method == "target_precision":
        reaching = np.flatnonzero(points.precision >= value - 1e-12)
        if reaching.size:
            return int(reaching[-1]), points, True
        best = np.flatnonzero(points.precision == points.precision.max())
        return int(best[-1]), points, False
    reaching = np.flatnonzero(points.recall >= value - 1e-12)
    return int(reaching[0]), points, True


def calibrate_from_labels(
    method: str,
    value: float,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    min_anomalies: int,
    min_normals: int,
) -> tuple[float | None, dict[str, Any]]:
    """The threshold ``method`` chooses on (n,) ``scores`` with (n,) 0/1 ``labels``, and what it
    stood on: ``(threshold or None when the labels are too few, record)``.

    ``record``: ``labelled_rows``, ``anomalies``, ``normals``, ``target_reached``, ``operating_point``
    (threshold, flags, precision, recall and F1 on the labelled rows; None without a threshold) and
    ``note`` (why no threshold, or that the target was not reached; None otherwise).
    """
    check_label_threshold(method, value)
    labels = np.asarray(labels).astype(bool)
    anomalies, normals = int(labels.sum()), int((~labels).sum())
    record: dict[str, Any] = {
        "labelled_rows": int(labels.size),
        "anomalies": anomalies,
        "normals": normals,
        "target_reached": False,
        "operating_point": None,
        "note": None,
    }
    if anomalies < min_anomalies or normals < min_normals:
        record["note"] = (
            f"{labels.size} labelled rows hold {anomalies} anomalies and {normals} normal rows; "
            f"{method} needs at least {min_anomalies} and {min_normals} "
            "(threshold.min_anomalies, threshold.min_normals)"
        )
        return None, record
    index, points, reached = choose_threshold(method, value, scores, labels)
    record.update(target_reached=reached, operating_point=points.point(index))
    if not reached:
        record["note"] = (
            f"no threshold reaches precision {value:.0%} on these labels: the highest, "
            f"{points.precision[index]:.1%} (flagging {points.flags[index]} of {labels.size}), "
            "is used"
        )
    return float(points.thresholds[index]), record
