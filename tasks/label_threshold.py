"""A fitted detector's threshold chosen from labels (``threshold.method`` = max_f1,
target_precision or target_recall; :mod:`models.label_thresholds` does the choosing).

The detector is fitted and calibrated without labels first, with the label-free fallback
(``threshold.fallback_method`` / ``fallback_value``); then the threshold is chosen on labelled rows
the network never took a gradient step on:

- ``validation``: the detector's own validation rows with the window's labels, plus the same share
  of the labelled anomalies left out of fitting (``training.exclude_labelled_anomalies``), so the
  labelled rows hold anomalies at the window's rate;
- ``feedback``: the rows analysts gave a verdict on (``aeflow feedback add``), read from their
  batches in incoming/ and scored by the new model (confirmed = anomaly, false_positive = normal);
- ``auto``: validation when the training window is labelled, else feedback.

With too few labelled anomalies or normal rows (``threshold.min_anomalies`` / ``min_normals``)
the fallback threshold stays, and the calibration record (the bundle's metrics, the evaluation
report, ``aeflow models show``) says so and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from models.detector_params import validation_split
from models.label_thresholds import calibrate_from_labels
from tasks.feedback import BATCH_COLUMN, ROW_COLUMN, latest_verdicts
from tasks.frames import feature_frame, null_missing_tokens
from tasks.io import Storage, read_table
from tasks.records import CONFIRMED
from tasks.settings import ColumnsSettings, ThresholdSettings
from tasks.window import accepted_batches


@dataclass(frozen=True)
class LabelledRows:
    """Rows to choose a threshold on: ``frame`` (n, features), ``labels`` (n,) int8 0/1,
    ``source`` ("validation" or "feedback") and ``detail`` (what they are, for the record)."""

    frame: pd.DataFrame
    labels: np.ndarray
    source: str
    detail: str


def validation_labelled_rows(
    features: pd.DataFrame, labels: np.ndarray, keep: np.ndarray, *, detector: Any, seed: int
) -> LabelledRows:
    """The labelled rows the detector held out: its validation share of the fit rows (``keep``,
    (n,) bool over ``features``), plus the same share of the labelled anomalies not fitted on."""
    fit_rows = np.flatnonzero(keep)
    held_out, _ = validation_split(
        fit_rows.size, detector.validation_fraction, detector.random_state
    )
    chosen = fit_rows[held_out]
    anomalies_out = np.flatnonzero(~keep & (labels == 1))
    comparable = int(keep.sum() + (~keep & (labels == 0)).sum())
    n_extra = round(anomalies_out.size * chosen.size / max(comparable, 1))
    if n_extra:
        extra = np.random.default_rng(seed).choice(anomalies_out, size=n_extra, replace=False)
        chosen = np.sort(np.r_[chosen, extra])
    detail = f"{chosen.size} labelled validation rows"
    if n_extra:
        detail += f" ({n_extra} of them labelled anomalies left out of fitting)"
    return LabelledRows(
        features.iloc[chosen].reset_index(drop=True), labels[chosen], "validation", detail
    )


def feedback_labelled_rows(storage: Storage, columns: ColumnsSettings) -> LabelledRows:
    """The rows analysts gave a verdict on, read from their batches in incoming/ (verdicts on
    batches no longer there are counted in ``detail`` and not used)."""
    latest = latest_verdicts(storage)
    among = set(latest[BATCH_COLUMN])
    inputs = {m.batch_id: m.input_path for m in accepted_batches(storage, among)}
    frames, labels, missing = [], [], 0
    features = [*columns.numeric, *columns.categorical]
    for batch_id, verdicts in latest.groupby(BATCH_COLUMN, sort=True):
        path = inputs.get(batch_id)
        if path is None:
            missing += len(verdicts)
            continue
        table = read_table(path, storage.options, columns=[columns.id, *features])
        table = null_missing_tokens(table, columns.missing_values)
        ids = table.column(columns.id).cast(pa.string())
        wanted = pa.array(verdicts[ROW_COLUMN].tolist(), pa.string())
        table = table.filter(pc.is_in(ids, value_set=wanted))
        verdict_of = dict(zip(verdicts[ROW_COLUMN], verdicts["verdict"], strict=True))
        row_ids = table.column(columns.id).cast(pa.string()).to_pylist()
        missing += len(verdicts) - len(set(row_ids))
        frames.append(feature_frame(table, columns.numeric, columns.categorical))
        labels.append(np.array([verdict_of[r] == CONFIRMED for r in row_ids], dtype=np.int8))
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=features)  # no verdict on a batch still in incoming/
    )
    detail = f"{len(frame)} rows with an analyst's verdict"
    if missing:
        detail += f" ({missing} verdicts on rows no longer in incoming/ not used)"
    label_vector = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int8)
    return LabelledRows(frame, label_vector, "feedback", detail)


def label_source(threshold: ThresholdSettings, window_labelled: bool) -> str:
    """Which labels choose the threshold: ``threshold.labels``, 'auto' resolved."""
    if threshold.labels != "auto":
        return threshold.labels
    return "validation" if window_labelled else "feedback"


def apply_label_threshold(
    detector: Any, rows: LabelledRows | None, *, threshold: ThresholdSettings, why_none: str = ""
) -> dict[str, Any]:
    """Choose ``detector``'s threshold with ``threshold.method`` on ``rows`` (None: no labelled
    rows, ``why_none`` says why) and record it in ``metadata_["calibration"]``; returns that record.

    The record keeps the label-free calibration's keys (method, value, source, rows,
    validation_rows, expected_tail_rows, note) and adds ``fallback`` (the label-free rule used, or
    None when the labels chose) and ``labels`` (counts and the operating point on the labelled
    rows)."""
    label_free = dict(detector.metadata_.get("calibration") or {})
    base = {
        "method": threshold.method,
        "value": float(threshold.value),
        "validation_rows": int(label_free.get("validation_rows") or 0),
        "expected_tail_rows": None,
    }
    chosen, counts = None, None
    if rows is not None and len(rows.labels):
        chosen, counts = calibrate_from_labels(
            threshold.method,
            threshold.value,
            detector.decision_function(rows.frame),
            rows.labels,
            min_anomalies=threshold.min_anomalies,
            min_normals=threshold.min_normals,
        )
        counts["detail"] = rows.detail
    if chosen is None:
        reason = counts["note"] if counts else (rows.detail if rows is not None else why_none)
        fallback = f"{label_free.get('method')} {label_free.get('value')}"
        if label_free.get("note"):
            fallback += f" ({label_free['note']})"
        record = {
            **base,
            "source": label_free.get("source", "validation"),
            "rows": int(label_free.get("rows") or 0),
            "expected_tail_rows": label_free.get("expected_tail_rows"),
            "note": f"{threshold.method} not used: {reason}; the label-free fallback {fallback} "
            "sets the threshold",
            "fallback": {"method": label_free.get("method"), "value": label_free.get("value")},
            "labels": counts,
        }
        detector.set_threshold(detector.threshold_, record)
        return record
    record = {
        **base,
        "source": "labels" if rows.source == "validation" else "feedback",
        "rows": int(len(rows.labels)),
        "note": counts["note"],
        "fallback": None,
        "labels": counts,
    }
    detector.set_threshold(chosen, record)
    return record


@dataclass(frozen=True)
class FitRows:
    """A training split's rows as fitting saw them: ``features`` (n, columns), ``labels`` (n,)
    int8 or None, ``keep`` (n,) bool (the rows fitted on) and the ``seed``."""

    features: pd.DataFrame
    labels: np.ndarray | None
    keep: np.ndarray
    seed: int


def threshold_from_labels(
    detector: Any,
    rows: FitRows,
    *,
    threshold: ThresholdSettings,
    columns: ColumnsSettings,
    storage: Storage,
) -> dict[str, Any]:
    """Choose the fitted ``detector``'s threshold from the labels ``threshold.labels`` names
    (module docstring); returns the calibration record :func:`apply_label_threshold` wrote."""
    source = label_source(threshold, rows.labels is not None)
    if source == "feedback":
        return apply_label_threshold(
            detector,
            feedback_labelled_rows(storage, columns),
            threshold=threshold,
        )
    if rows.labels is None:
        return apply_label_threshold(
            detector,
            None,
            threshold=threshold,
            why_none="threshold.labels = 'validation', but the training window has no labels",
        )
    labelled = validation_labelled_rows(
        rows.features, rows.labels, rows.keep, detector=detector, seed=rows.seed
    )
    return apply_label_threshold(detector, labelled, threshold=threshold)
