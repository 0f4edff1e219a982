"""Evaluation of a trained detector on the holdout rows of its training window.

What a person needs to trust a model (tests call each piece directly):

- reconstruction quality overall and per column, in units every model shares, so a challenger and
  the champion can be compared on the same rows (:mod:`tasks.reconstruction_errors`);
- the anomaly scores: their distribution, the flag rate and how well the calibrated
  ``anomaly_percentile`` holds up on new rows; with labels: AUROC, AUPRC, precision / recall / F1
  at the threshold, the confusion matrix and precision@k; the configured threshold policy beside
  the common alternatives (:mod:`tasks.holdout_metrics`);
- the anchors (Isolation Forest, ECOD, HBOS, KNN, PCA, and PyOD's AutoEncoder and DIF where PyOD
  is installed) fitted on the same training rows with the model's own preprocessing
  (:mod:`tasks.anchors`);
- the explanation check: single-column anomalies planted in holdout rows, and how often the planted
  column comes first in ``top_features`` (:mod:`tasks.explanation_check`);
- data-quality checks: possible label leakage, class imbalance and train-vs-holdout shift
  (:mod:`tasks.data_quality`).

The tasks load the split files and the model bundle by path and return typed records
(:class:`tasks.records.Evaluation`, :class:`tasks.records.ChampionEvaluation`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.registry import RegistryError
from tasks.anchors import baseline_rows, fit_baselines
from tasks.data_quality import data_quality
from tasks.explanation_check import explanation_check
from tasks.fit_checks import flag_rate_warning, training_warnings
from tasks.flag_precision import feedback_summary
from tasks.holdout_metrics import (
    configured_policy,
    json_number,
    label_metrics,
    score_summary,
    threshold_policies,
)
from tasks.io import Storage, read_table, write_parquet_atomic
from tasks.reconstruction_errors import (
    reconstruction_errors,
    reconstruction_metrics,
    reference_scales,
)
from tasks.records import ChampionEvaluation, Evaluation, TrainingSplit
from tasks.settings import ColumnsSettings, EvaluationSettings, TrainingSettings
from tasks.training import fit_row_mask, load_split


def new_run_id(now: dt.datetime | None = None) -> str:
    """A run folder name: UTC time (sortable) plus 6 random hex digits, e.g.
    ``20260105T021500Z-3fa2c1``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


# -------------------------------------------------------------------------------- evaluations
def latent_projection(latent: np.ndarray) -> np.ndarray:
    """(n, k) latent features -> (n, 2) float32 coordinates of their first two principal axes."""
    latent = np.asarray(latent, dtype=np.float64)
    projected = np.zeros((latent.shape[0], 2))
    if latent.shape[0] >= 2:
        centred = latent - latent.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        axes = components[:2].T
        projected[:, : axes.shape[1]] = centred @ axes
    return projected.astype(np.float32)


def evaluate_detector(
    detector: Any,
    holdout_frame: pd.DataFrame,
    holdout_labels: np.ndarray | None,
    scales: dict[str, float],
) -> tuple[dict[str, Any], Any]:
    """The comparable part of an evaluation: reconstruction (on the rows not labelled anomalous),
    score summary and label metrics on the holdout. Returns ``(metrics, ScoreResult)``."""
    result = detector.score(holdout_frame, top_k=3)
    threshold = float(detector.threshold_)
    normal = (
        np.ones(len(holdout_frame), dtype=bool) if holdout_labels is None else holdout_labels == 0
    )
    reconstruction = reconstruction_metrics(
        reconstruction_errors(detector, holdout_frame.loc[normal], scales)
    )
    reconstruction["rows_excluded_as_labelled_anomalies"] = int((~normal).sum())
    metrics = {
        "reconstruction": reconstruction,
        "scores": score_summary(result.scores, result.percentiles, threshold, holdout_labels),
        "labels": (
            label_metrics(holdout_labels, result.scores, threshold)
            if holdout_labels is not None
            else None
        ),
    }
    return metrics, result


@dataclass(frozen=True)
class EvaluationRows:
    """The rows an evaluation reads (frames of the model's feature columns, labels (n,) int8 or
    None).

    ``train_frame`` (with ``train_labels``) is a sample of the training window: shift, leakage and
    class balance are measured against it. ``fit_frame`` is a sample of the rows the model could
    be fitted on (default: ``train_frame``): the baselines are fitted on it and the contamination
    threshold is calibrated on its scores. ``holdout_passthrough`` holds the holdout's id and
    timestamp columns for the per-row results.
    """

    train_frame: pd.DataFrame
    train_labels: np.ndarray | None
    holdout_frame: pd.DataFrame
    holdout_labels: np.ndarray | None
    holdout_passthrough: pd.DataFrame | None = None
    fit_frame: pd.DataFrame | None = None


def evaluate_challenger(
    detector: Any,
    version: str,
    rows: EvaluationRows,
    *,
    evaluation: EvaluationSettings,
    seed: int = 0,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Everything the report shows about a newly trained model, measured on ``rows``
    (:class:`EvaluationRows`); ``evaluation`` says whether to fit the baselines and the leakage
    limit.

    Returns ``(metrics, holdout_rows)``: metrics as JSON-able dicts (see
    docs/metrics.schema.json) and one row per holdout row with the passthrough columns,
    ``anomaly_score``, ``anomaly_percentile``, ``is_anomaly``, ``top_features``, ``label`` (when
    labelled), ``latent_x``/``latent_y`` and one ``score_<baseline>`` column per baseline.
    """
    train_frame, train_labels = rows.train_frame, rows.train_labels
    holdout_frame, holdout_labels = rows.holdout_frame, rows.holdout_labels
    holdout_passthrough, fit_frame = rows.holdout_passthrough, rows.fit_frame
    baselines, leakage_auroc = evaluation.baselines, evaluation.leakage_auroc
    numeric, categorical = list(detector.numeric_columns_), list(detector.categorical_columns_)
    scales = reference_scales(
        holdout_frame if holdout_labels is None else holdout_frame.loc[holdout_labels == 0],
        numeric,
    )
    metrics, result = evaluate_detector(detector, holdout_frame, holdout_labels, scales)
    metrics["reconstruction"]["scales"] = {k: json_number(v) for k, v in scales.items()}
    fit_frame = train_frame if fit_frame is None else fit_frame
    fit_scores = detector.decision_function(fit_frame)
    history = detector.history_
    metadata = getattr(detector, "metadata_", {})
    method, value = configured_policy(detector)
    metrics["model"] = {
        "version": version,
        "threshold_method": method,
        "threshold_value": value,
        "threshold": json_number(detector.threshold_),
        "latent_dim": int(detector.latent_dim_),
        "n_members": detector.n_members,
        "columns": {"numeric": numeric, "categorical": categorical},
    }
    metrics["training"] = {
        "epochs": int(detector.epochs),
        "calibration": metadata.get("calibration"),
        "fit_seconds": json_number(metadata.get("fit_seconds")),
        "train_rows": metadata.get("n_train_rows"),
        "validation_rows": metadata.get("n_validation_rows"),
        "epochs_run": int(history.get("epochs_run", len(history.get("train_loss", [])))),
        "best_epoch": int(history.get("best_epoch", 0)),
        "train_loss": [json_number(v) for v in history.get("train_loss", [])],
        "val_loss": [json_number(v) for v in history.get("val_loss", [])],
    }
    labelled = None
    if train_labels is not None and 0 < train_labels.sum() < len(train_labels):
        train_scores = (
            fit_scores if fit_frame is train_frame else detector.decision_function(train_frame)
        )
        labelled = (train_scores, train_labels)
    metrics["threshold_policies"] = threshold_policies(
        detector, result.scores, holdout_labels, fit_scores, labelled=labelled
    )
    per_row = (
        holdout_passthrough.reset_index(drop=True).copy()
        if holdout_passthrough is not None
        else pd.DataFrame(index=range(len(holdout_frame)))
    )
    per_row["anomaly_score"] = result.scores
    per_row["anomaly_percentile"] = result.percentiles
    per_row["is_anomaly"] = result.is_anomaly
    per_row["top_features"] = result.top_features
    if holdout_labels is not None:
        per_row["label"] = holdout_labels.astype(np.int8)
    projection = latent_projection(result.latent)
    per_row["latent_x"], per_row["latent_y"] = projection[:, 0], projection[:, 1]
    metrics["baselines"] = []
    if baselines:
        fitted = fit_baselines(
            detector,
            fit_frame,
            holdout_frame,
            detector.threshold_method,
            float(detector.threshold_value),
            seed,
        )
        metrics["baselines"] = baseline_rows(fitted, result.scores, holdout_labels)
        for name, values in fitted.items():
            per_row[f"score_{name}"] = values["scores"]
    metrics["explanations"] = explanation_check(
        detector, fit_frame, holdout_frame, holdout_labels, seed=seed
    )
    metrics["data_quality"] = data_quality(
        train_frame,
        train_labels,
        holdout_frame,
        holdout_labels,
        numeric,
        categorical,
        leakage_auroc,
    )
    metrics["data_quality"]["warnings"] += fit_warnings(detector, result.is_anomaly, holdout_labels)
    return metrics, per_row


def fit_warnings(
    detector: Any, holdout_flags: np.ndarray, holdout_labels: np.ndarray | None
) -> list[str]:
    """The fit's warnings: epoch cap, calibration fallback, and a holdout flag rate of 0 or far
    from the threshold rule's target (on the rows not labelled anomalous)."""
    metadata = getattr(detector, "metadata_", {})
    warnings = training_warnings(detector.history_, detector.epochs, metadata.get("calibration"))
    flags = np.asarray(holdout_flags, dtype=bool)
    if holdout_labels is not None:
        flags = flags[np.asarray(holdout_labels) == 0]
    where = "the holdout" if holdout_labels is None else "the holdout's normal rows"
    method, value = configured_policy(detector)
    flag_warning = flag_rate_warning(int(flags.sum()), int(flags.size), method, value, where)
    return [*warnings, *([flag_warning] if flag_warning else [])]


def _sample_rows(n_rows: int, max_rows: int, seed: int) -> np.ndarray:
    if n_rows <= max_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False))


def evaluate_version(
    *,
    version: str,
    split: TrainingSplit,
    columns: ColumnsSettings,
    training: TrainingSettings,
    evaluation: EvaluationSettings,
    run: str | None,
    storage: Storage,
) -> Evaluation:
    """Evaluate a registered challenger on a split made by
    :func:`tasks.training.split_training_window`.

    Two seeded samples of at most ``evaluation.baseline_max_rows`` training rows are used: the
    training window as it was (anomalies included) for the data-quality checks, and the rows the
    model could be fitted on (labelled anomalies left out when
    ``training.exclude_labelled_anomalies``, as in training) for the baselines and the
    contamination threshold. With ``run`` the per-row holdout results are written to the run's
    report folder (:meth:`tasks.io.Storage.holdout_scores`).
    """
    options, seed = storage.options, training.seed
    numeric, categorical = columns.numeric, columns.categorical
    label_column = split.label_column
    detector, _ = storage.registry().load(version)
    train_frame, train_labels = load_split(
        split.train_path, numeric, categorical, label_column, options
    )
    window_rows = _sample_rows(len(train_frame), evaluation.baseline_max_rows, seed)
    fittable = np.flatnonzero(
        fit_row_mask(
            len(train_frame),
            train_labels,
            training.exclude_labelled_anomalies,
            len(train_frame),
            seed,
        )
    )
    fit_rows = fittable[_sample_rows(fittable.size, evaluation.baseline_max_rows, seed)]
    holdout_frame, holdout_labels = load_split(
        split.holdout_path, numeric, categorical, label_column, options
    )
    passthrough = [c for c in columns.passthrough if c]
    holdout_passthrough = (
        read_table(split.holdout_path, options, columns=list(passthrough)).to_pandas()
        if passthrough
        else None
    )
    # Nothing left out of fitting: the same rows, so None (evaluate_challenger scores them once).
    fit_frame = None
    if not np.array_equal(fit_rows, window_rows):
        fit_frame = train_frame.iloc[fit_rows].reset_index(drop=True)
    rows = EvaluationRows(
        train_frame=train_frame.iloc[window_rows].reset_index(drop=True),
        train_labels=train_labels[window_rows] if train_labels is not None else None,
        holdout_frame=holdout_frame,
        holdout_labels=holdout_labels,
        holdout_passthrough=holdout_passthrough,
        fit_frame=fit_frame,
    )
    metrics, per_row = evaluate_challenger(
        detector, version, rows, evaluation=evaluation, seed=seed
    )
    metrics["split"] = split.description()
    # What analysts said about earlier models' flags, for the report (tasks.flag_precision).
    metrics["feedback"] = feedback_summary(storage, feedback=None)
    if metrics["split"]["label_note"]:
        metrics["data_quality"]["warnings"].append(metrics["split"]["label_note"])
    metrics["split"]["evaluation_train_rows"] = int(len(window_rows))
    metrics["holdout_scores_path"] = None
    if run is not None:
        path = storage.holdout_scores(run)
        write_parquet_atomic(
            pa.Table.from_pandas(per_row, preserve_index=False), path, options=options
        )
        metrics["holdout_scores_path"] = path
    return Evaluation(
        version=version, metrics=metrics, holdout_scores_path=metrics["holdout_scores_path"]
    )


def evaluate_champion(
    *,
    champion_version: str | None,
    challenger_version: str,
    split: TrainingSplit,
    scales: dict[str, float],
    storage: Storage,
) -> ChampionEvaluation | None:
    """The champion ``champion_version`` (as the run read it: the gate refuses a promotion when
    the champion changed since, :func:`tasks.gate.apply_gate`) on the challenger's holdout rows,
    with the challenger's error units.

    None when there is no champion (or the challenger already is it); ``error`` (and no metrics)
    when the champion cannot score these rows, e.g. it was fitted on columns the data no longer
    has.
    """
    version = champion_version
    if version is None or version == challenger_version:
        return None
    try:
        detector, _ = storage.registry().load(version)
        frame, labels = load_split(
            split.holdout_path,
            list(detector.numeric_columns_),
            list(detector.categorical_columns_),
            split.label_column,
            storage.options,
        )
        metrics, _ = evaluate_detector(detector, frame, labels, scales)
    # A bundle that fails its checksums (BundleError is a ValueError), a missing bundle, or columns
    # the holdout does not have: the champion cannot score these rows, and the gate says so.
    except (ValueError, KeyError, TypeError, RegistryError, pa.ArrowInvalid) as exc:
        return ChampionEvaluation(version=version, error=f"{type(exc).__name__}: {exc}")
    return ChampionEvaluation(version=version, **metrics)


# ------------------------------------------------------------------------------ Prefect tasks
evaluate_task = task(evaluate_version, name="evaluate-challenger", cache_policy=NO_CACHE)
evaluate_champion_task = task(evaluate_champion, name="evaluate-champion", cache_policy=NO_CACHE)
