"""Evaluation of a trained detector on the holdout rows of its training window.

What a person needs to trust a model, computed by plain functions (tests call them directly):

- reconstruction quality overall and per column, in units every model shares (so a challenger and
  the champion can be compared on the same rows, see :func:`reconstruction_metrics`);
- the anomaly scores: their distribution, the flag rate and how well the calibrated
  ``anomaly_percentile`` holds up on new rows;
- with labels: AUROC, AUPRC, precision / recall / F1 at the threshold, the confusion matrix and
  precision@k;
- the configured threshold policy beside the common alternatives (target false-positive rates,
  mean + k·std, contamination);
- the anchors (Isolation Forest, ECOD, HBOS, KNN, PCA, and PyOD's AutoEncoder and DIF where PyOD
  is installed; :mod:`tasks.anchors`) fitted on the same training rows with the model's own
  preprocessing;
- the explanation check: single-column anomalies planted in holdout rows, and how often the planted
  column comes first in ``top_features`` (:mod:`tasks.explanation_check`);
- data-quality checks: possible label leakage, class imbalance and train-vs-holdout shift.

The Prefect tasks at the bottom load the split files and the model bundle by path and return JSON.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from models import calibration
from models.detector import INPUT_CLIP
from models.preprocessing import as_frame, normalise_frame
from models.registry import ModelRegistry, RegistryError
from tasks.fit_checks import flag_rate_warning, training_warnings
from tasks.io import StorageOptions, join, read_table, write_parquet_atomic
from tasks.training import fit_row_mask, load_split

HOLDOUT_SCORES_FILE = "holdout_scores.parquet"
# PSI convention: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a significant one.
PSI_SIGNIFICANT = 0.25
PSI_BINS, PSI_MAX_LEVELS, PSI_EPSILON = 10, 50, 1e-4
# Fewer labelled anomalies than this in the holdout make AUROC/AUPRC too noisy to lean on.
MIN_HOLDOUT_POSITIVES = 10
# Rows per forward pass when reconstructing: bounded activation memory on wide frames.
RECONSTRUCT_CHUNK_ROWS = 32_768
# The anchors the report fits (tasks/anchors.py); the slow ones on at most SLOW_ANCHOR_ROWS rows.
ANCHOR_NAMES = ("IForest", "ECOD", "HBOS", "KNN", "PCA", "AutoEncoder", "DIF")
SLOW_ANCHORS, SLOW_ANCHOR_ROWS = ("KNN", "AutoEncoder", "DIF"), 5_000
# Policies shown beside the configured one: (method, value); contamination uses the label share.
COMPARED_POLICIES = (("fpr", 0.01), ("fpr", 0.05), ("mean_std", 3.0))


def new_run_id(now: dt.datetime | None = None) -> str:
    """A run folder name: UTC time (sortable) plus 6 random hex digits, e.g.
    ``20260105T021500Z-3fa2c1``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def _number(value: Any) -> float | None:
    """A JSON-safe float (None for NaN/inf/None)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------ reconstruction
def reference_scales(frame: pd.DataFrame, numeric: Sequence[str]) -> dict[str, float]:
    """{numeric column: standard deviation of its observed values} (1.0 when constant or empty).

    Reconstruction errors of numeric columns are divided by these scales. They come from the
    holdout rows, not from a model, so every model evaluated on the same holdout shares the unit.
    """
    scales = {}
    for name in numeric:
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        std = float(values.std()) if values.size else 0.0
        scales[name] = std if std > 1e-12 else 1.0
    return scales


@dataclass(frozen=True)
class Reconstruction:
    """Per-row, per-column reconstruction errors of n rows.

    Attributes:
        columns: the detector's columns, numeric first then categorical.
        kinds: ``"numeric"`` or ``"categorical"`` per column.
        squared: (n, n_columns) float64. Numeric: ((reconstructed - observed) / scale)², NaN where
            the input was missing. Categorical: the Brier score of the predicted level
            distribution against the observed level (a level the model never saw adds 1).
        absolute: (n, n_columns) float64. Numeric: |reconstructed - observed| / scale.
            Categorical: 1 - predicted probability of the observed level.
        correct: (n, n_categorical) bool, the most likely predicted level is the observed one.
    """

    columns: tuple[str, ...]
    kinds: tuple[str, ...]
    squared: np.ndarray
    absolute: np.ndarray
    correct: np.ndarray


def preprocessed(detector: Any, frame: pd.DataFrame) -> np.ndarray:
    """(n, n_features) float32: ``frame`` through the detector's fitted preprocessing."""
    normalised = normalise_frame(
        as_frame(frame), detector.numeric_columns_, detector.categorical_columns_
    )
    features = detector.preprocessor_.transform(normalised).astype(np.float32, copy=False)
    return np.clip(features, -INPUT_CLIP, INPUT_CLIP)


def reconstruct(detector: Any, frame: pd.DataFrame, scales: dict[str, float]) -> Reconstruction:
    """Reconstruct ``frame`` (n rows) with a fitted AutoencoderDetector and measure the errors.

    Numeric reconstructions are mapped back to the column's own units with the inverse of the
    model's preprocessing (a flag column: the expectation of its two values under the predicted
    probabilities), then divided by ``scales`` (see :func:`reference_scales`): errors do not depend
    on how a model scaled its inputs.
    """
    from models.explanations import reconstruction

    numeric = list(detector.numeric_columns_)
    categorical = list(detector.categorical_columns_)
    normalised = normalise_frame(as_frame(frame), numeric, categorical)
    inputs = preprocessed(detector, normalised)
    layout = detector.layout_
    parts = [
        reconstruction(detector, torch.from_numpy(chunk).to(detector.device_))
        for chunk in np.array_split(inputs, max(1, -(-len(inputs) // RECONSTRUCT_CHUNK_ROWS)))
    ]
    values = np.concatenate([p.values for p in parts]) if parts else np.zeros((0, 0))
    probabilities = np.concatenate([p.probabilities for p in parts]) if parts else np.zeros((0, 0))
    first = layout.categorical_blocks[0][0] if layout.categorical_blocks else layout.n_features
    n_rows, n_numeric = len(normalised), len(numeric)
    squared = np.full((n_rows, n_numeric + len(categorical)), np.nan)
    absolute = np.full_like(squared, np.nan)
    rebuilt = np.full((n_rows, n_numeric), np.nan)
    for j, column in enumerate(layout.value_columns):
        rebuilt[:, column] = values[:, j]
    for block, (low, high) in enumerate(layout.binary_values):
        start, stop, column = layout.categorical_blocks[block]
        levels = layout.levels[block]
        shares = probabilities[:, start - first : stop - first]
        p_low, p_high = shares[:, levels.index(f"{low:g}")], shares[:, levels.index(f"{high:g}")]
        rebuilt[:, column] = (p_low * low + p_high * high) / np.maximum(p_low + p_high, 1e-12)
    if numeric:
        observed = normalised[numeric].to_numpy(dtype=np.float64)
        unit = np.asarray([scales.get(name, 1.0) for name in numeric])
        residual = (rebuilt - observed) / unit  # NaN where the input was missing
        squared[:, :n_numeric] = residual**2
        absolute[:, :n_numeric] = np.abs(residual)
    correct = np.zeros((n_rows, len(categorical)), dtype=bool)
    n_binary = len(layout.binary_values)
    for j, (start, stop, _) in enumerate(layout.categorical_blocks[n_binary:]):
        block_probabilities = probabilities[:, start - first : stop - first]
        one_hot = inputs[:, start:stop].astype(np.float64)
        known = one_hot.sum(axis=1) > 0.5
        observed_probability = (block_probabilities * one_hot).sum(axis=1)
        squared[:, n_numeric + j] = ((block_probabilities - one_hot) ** 2).sum(axis=1) + ~known
        absolute[:, n_numeric + j] = 1.0 - observed_probability
        correct[:, j] = known & (block_probabilities.argmax(axis=1) == one_hot.argmax(axis=1))
    kinds = ("numeric",) * n_numeric + ("categorical",) * len(categorical)
    return Reconstruction(tuple(numeric + categorical), kinds, squared, absolute, correct)


def reconstruction_metrics(reconstruction: Reconstruction) -> dict[str, Any]:
    """MSE, RMSE and MAE overall and per column from :func:`reconstruct`.

    A column's MSE/MAE average its rows (missing numeric inputs left out); the overall MSE and MAE
    average the columns (each column counts once, whatever its number of levels), and the RMSE is
    the square root of the MSE.
    """
    per_column = []
    n_numeric = sum(kind == "numeric" for kind in reconstruction.kinds)
    for j, (name, kind) in enumerate(
        zip(reconstruction.columns, reconstruction.kinds, strict=True)
    ):
        observed = ~np.isnan(reconstruction.squared[:, j])
        rows = int(observed.sum())
        mse = float(reconstruction.squared[observed, j].mean()) if rows else None
        per_column.append(
            {
                "column": name,
                "kind": kind,
                "rows": rows,
                "mse": _number(mse),
                "rmse": _number(math.sqrt(mse)) if mse is not None else None,
                "mae": _number(reconstruction.absolute[observed, j].mean()) if rows else None,
                "accuracy": (
                    _number(reconstruction.correct[:, j - n_numeric].mean())
                    if kind == "categorical" and rows
                    else None
                ),
            }
        )
    mses = [c["mse"] for c in per_column if c["mse"] is not None]
    maes = [c["mae"] for c in per_column if c["mae"] is not None]
    mse = float(np.mean(mses)) if mses else None
    return {
        "rows": int(reconstruction.squared.shape[0]),
        "mse": _number(mse),
        "rmse": _number(math.sqrt(mse)) if mse is not None else None,
        "mae": _number(np.mean(maes)) if maes else None,
        "per_column": per_column,
    }


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
        "positive_share": _number(positives / len(labels)) if len(labels) else None,
        "auroc": _number(roc_auc_score(labels, scores)) if both else None,
        "auprc": _number(average_precision_score(labels, scores)) if both else None,
        "threshold": _number(threshold),
        "precision": _number(precision),
        "recall": _number(recall),
        "f1": _number(f1),
        "false_positive_rate": _number(fp / negatives) if negatives else None,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "precision_at_k": {
            "k": positives,
            "precision": _number(labels[top_k].mean()) if positives else None,
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
        "mean": _number(scores.mean()) if scores.size else None,
        "std": _number(scores.std()) if scores.size else None,
        "p50": _number(quantiles[0]),
        "p90": _number(quantiles[1]),
        "p99": _number(quantiles[2]),
        "max": _number(scores.max()) if scores.size else None,
        "threshold": _number(threshold),
        "flag_rate": _number((scores > threshold).mean()) if scores.size else None,
        "normal_flag_rate": _number((scores[normal] > threshold).mean()) if normal.any() else None,
        "percentile_ks": _number(ks),
    }


# -------------------------------------------------------------------------- threshold policies
def threshold_policies(
    detector: Any,
    holdout_scores: np.ndarray,
    labels: np.ndarray | None,
    fit_scores: np.ndarray,
    contamination: float | None = None,
) -> list[dict[str, Any]]:
    """The configured threshold and the common alternatives, each calibrated the way the detector
    does it (on its validation score distribution; contamination on ``fit_scores``, the scores of
    training rows), with the holdout flag rate and, with labels, precision / recall / F1.

    ``contamination`` defaults to the holdout's label share (1% without labels).
    """
    validation = np.asarray(detector.reference_scores_, dtype=np.float64)
    if contamination is None:
        share = float(np.mean(labels)) if labels is not None and len(labels) else 0.0
        contamination = min(0.5, share) if share > 0 else 0.01
    configured = (detector.threshold_method, float(detector.threshold_value))
    candidates = [configured, *COMPARED_POLICIES, ("contamination", round(contamination, 6))]
    rows, seen = [], set()
    for method, value in candidates:
        if (method, value) in seen:
            continue
        seen.add((method, value))
        if (method, value) == configured:
            threshold = float(detector.threshold_)
        else:
            threshold = calibration.fit_threshold(method, value, validation, fit_scores)
        flags = holdout_scores > threshold
        row: dict[str, Any] = {
            "method": method,
            "value": float(value),
            "configured": (method, value) == configured,
            "threshold": _number(threshold),
            "flag_rate": _number(flags.mean()) if flags.size else None,
        }
        if labels is not None:
            scored = label_metrics(labels, holdout_scores, threshold)
            row.update(precision=scored["precision"], recall=scored["recall"], f1=scored["f1"])
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ baselines
def fit_baselines(
    detector: Any,
    train_frame: pd.DataFrame,
    holdout_frame: pd.DataFrame,
    threshold_method: str,
    threshold_value: float,
    seed: int = 0,
    anchors: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The anchors (:mod:`tasks.anchors`: IForest, ECOD, HBOS, KNN, PCA, and PyOD's AutoEncoder and
    DIF when PyOD is installed) on the detector's preprocessing.

    Each is fitted on 90% of ``train_frame`` (the rows the caller sampled from the training rows);
    its threshold is calibrated with the same policy on the other 10% (a ``fixed`` policy is in
    the autoencoder's score units, so anchors use a 1% false-positive rate instead). The slow
    anchors (KNN, AutoEncoder, DIF) fit on at most :data:`SLOW_ANCHOR_ROWS` of those rows.

    Returns ``{name: {"scores": (n_holdout,) float64, "threshold", "threshold_method",
    "threshold_value", "fit_rows", "fit_seconds", "params"}}``.
    """
    from tasks.anchors import available_anchors, fit_score, pyod_available

    train = preprocessed(detector, train_frame).astype(np.float64)
    holdout = preprocessed(detector, holdout_frame).astype(np.float64)
    order = np.random.default_rng(seed).permutation(len(train))
    n_calibration = max(1, len(train) // 10)
    fit_rows, calibration_rows = train[order[n_calibration:]], train[order[:n_calibration]]
    method, value = (
        ("fpr", 0.01) if threshold_method == "fixed" else (threshold_method, threshold_value)
    )
    implementation = "PyOD" if pyod_available() else "aeflow (tasks/anchors.py)"
    results = {}
    for name in available_anchors(anchors or ANCHOR_NAMES):
        rows = fit_rows[:SLOW_ANCHOR_ROWS] if name in SLOW_ANCHORS else fit_rows
        if len(rows) < 2:
            continue
        started = time.perf_counter()
        calibration_scores, rows_scores, holdout_scores = fit_score(
            name, seed, rows, [calibration_rows, rows, holdout]
        )
        threshold = calibration.fit_threshold(method, value, calibration_scores, rows_scores)
        results[name] = {
            "scores": holdout_scores.astype(np.float64),
            "threshold": float(threshold),
            "threshold_method": method,
            "threshold_value": float(value),
            "fit_rows": int(len(rows)),
            "fit_seconds": round(time.perf_counter() - started, 3),
            "params": {"implementation": implementation, "defaults": True},
        }
    return results


def baseline_rows(
    baselines: dict[str, dict[str, Any]], model_scores: np.ndarray, labels: np.ndarray | None
) -> list[dict[str, Any]]:
    """One metrics row per baseline: threshold, holdout flag rate, Spearman rank correlation with
    the autoencoder's scores and, with labels, the label metrics."""
    from scipy.stats import spearmanr

    rows = []
    for name, fitted in baselines.items():
        scores = fitted["scores"]
        correlation = spearmanr(scores, model_scores).statistic if len(scores) > 1 else None
        row = {
            "name": name,
            "params": fitted["params"],
            "fit_rows": fitted["fit_rows"],
            "fit_seconds": fitted["fit_seconds"],
            "threshold_method": fitted["threshold_method"],
            "threshold_value": fitted["threshold_value"],
            "threshold": _number(fitted["threshold"]),
            "flag_rate": _number((scores > fitted["threshold"]).mean()),
            "rank_correlation": _number(correlation),
            "labels": None,
        }
        if labels is not None:
            row["labels"] = label_metrics(labels, scores, fitted["threshold"])
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------- data quality
def population_stability_index(
    reference: pd.Series, current: pd.Series, kind: str, bins: int = PSI_BINS
) -> float:
    """PSI of ``current`` against ``reference``: sum over bins of (c - r) * ln(c / r).

    Numeric columns use the reference's quantile bins; categorical columns its
    :data:`PSI_MAX_LEVELS` most frequent levels plus an "other" bin; missing values are a bin of
    their own. Shares are floored at :data:`PSI_EPSILON` so empty bins stay finite.
    """

    def shares(codes: np.ndarray, n_bins: int) -> np.ndarray:
        counts = np.bincount(codes, minlength=n_bins).astype(np.float64)
        return np.maximum(counts / max(1, codes.size), PSI_EPSILON)

    if kind == "numeric":
        ref = pd.to_numeric(reference, errors="coerce").to_numpy(dtype=np.float64)
        cur = pd.to_numeric(current, errors="coerce").to_numpy(dtype=np.float64)
        observed = ref[np.isfinite(ref)]
        edges = (
            np.unique(np.quantile(observed, np.linspace(0, 1, bins + 1)[1:-1]))
            if observed.size
            else np.array([])
        )

        def codes_of(values: np.ndarray) -> np.ndarray:
            codes = np.searchsorted(edges, values, side="right")
            return np.where(np.isfinite(values), codes, edges.size + 1)

        n_bins = edges.size + 2
        r, c = shares(codes_of(ref), n_bins), shares(codes_of(cur), n_bins)
    else:
        top = reference.dropna().astype(str).value_counts().index[:PSI_MAX_LEVELS]
        lookup = {level: i for i, level in enumerate(top)}
        n_bins = len(top) + 2  # + "other" + missing

        def codes_of(values: pd.Series) -> np.ndarray:
            missing = values.isna().to_numpy()
            text = values.astype(object).astype(str)
            codes = text.map(lookup).fillna(len(top)).to_numpy(dtype=np.int64)
            return np.where(missing, len(top) + 1, codes)

        r, c = shares(codes_of(reference), n_bins), shares(codes_of(current), n_bins)
    return float(np.sum((c - r) * np.log(c / r)))


def distribution_shift(
    train_frame: pd.DataFrame,
    holdout_frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
) -> list[dict[str, Any]]:
    """Per feature: PSI of the holdout against the training rows and both null shares, largest
    PSI first."""
    rows = []
    for name, kind in [
        *((c, "numeric") for c in numeric),
        *((c, "categorical") for c in categorical),
    ]:
        rows.append(
            {
                "column": name,
                "kind": kind,
                "psi": _number(
                    population_stability_index(train_frame[name], holdout_frame[name], kind)
                ),
                "null_share_train": _number(train_frame[name].isna().mean()),
                "null_share_holdout": _number(holdout_frame[name].isna().mean()),
            }
        )
    return sorted(rows, key=lambda r: -(r["psi"] or 0.0))


def _single_feature_auroc(labels: np.ndarray, values: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if labels.min() == labels.max():
        return None
    auroc = float(roc_auc_score(labels, values))
    return max(auroc, 1.0 - auroc)  # a feature that predicts "normal" leaks just as much


def leakage_scan(
    train_frame: pd.DataFrame,
    train_labels: np.ndarray,
    holdout_frame: pd.DataFrame,
    holdout_labels: np.ndarray,
    numeric: Sequence[str],
    categorical: Sequence[str],
) -> list[dict[str, Any]]:
    """How well each feature alone separates the labels: AUROC in [0.5, 1], highest first.

    A numeric column is ranked as it is (missing values as the training median) over the training
    and holdout rows together. A categorical column is replaced by each level's anomaly rate in the
    training rows (shrunk towards the overall rate, so a level seen once cannot look perfect) and
    ranked on the holdout rows, or on the training rows when the holdout has one class only.
    """
    rows = []
    all_labels = np.concatenate([train_labels, holdout_labels]).astype(np.int8)
    for name in numeric:
        values = pd.concat([train_frame[name], holdout_frame[name]], ignore_index=True)
        values = pd.to_numeric(values, errors="coerce").astype("float64")
        filled = values.fillna(values.iloc[: len(train_frame)].median()).fillna(0.0)
        auroc = _single_feature_auroc(all_labels, filled.to_numpy())
        rows.append({"column": name, "kind": "numeric", "auroc": _number(auroc), "rows": "all"})
    overall = float(train_labels.mean()) if len(train_labels) else 0.0
    for name in categorical:
        train_levels = train_frame[name].astype(object).fillna("__missing__").astype(str)
        stats = pd.DataFrame({"level": train_levels.to_numpy(), "y": train_labels}).groupby(
            "level"
        )["y"]
        prior = 10.0  # pseudo-rows at the overall rate
        rates = (stats.sum() + prior * overall) / (stats.count() + prior)
        use_holdout = 0 < holdout_labels.sum() < len(holdout_labels)
        frame, labels = (
            (holdout_frame, holdout_labels) if use_holdout else (train_frame, train_labels)
        )
        levels = frame[name].astype(object).fillna("__missing__").astype(str)
        encoded = levels.map(rates).fillna(overall).to_numpy(dtype=np.float64)
        auroc = _single_feature_auroc(np.asarray(labels), encoded)
        rows.append(
            {
                "column": name,
                "kind": "categorical",
                "auroc": _number(auroc),
                "rows": "holdout" if use_holdout else "train",
            }
        )
    return sorted(rows, key=lambda r: -(r["auroc"] or 0.0))


def class_balance(train_labels: np.ndarray, holdout_labels: np.ndarray) -> dict[str, Any]:
    """Counts and shares of labelled anomalies in the training and holdout rows."""

    def part(labels: np.ndarray) -> dict[str, Any]:
        positives = int(np.sum(labels))
        return {
            "rows": int(len(labels)),
            "positives": positives,
            "share": _number(positives / len(labels)) if len(labels) else None,
        }

    return {"train": part(train_labels), "holdout": part(holdout_labels)}


def data_quality(
    train_frame: pd.DataFrame,
    train_labels: np.ndarray | None,
    holdout_frame: pd.DataFrame,
    holdout_labels: np.ndarray | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    leakage_auroc: float = 0.98,
) -> dict[str, Any]:
    """Leakage, class balance and shift, plus one readable warning per finding."""
    warnings: list[str] = []
    shift = distribution_shift(train_frame, holdout_frame, numeric, categorical)
    shifted = [r for r in shift if (r["psi"] or 0.0) >= PSI_SIGNIFICANT]
    if shifted:
        listed = ", ".join(f"{r['column']} (PSI {r['psi']:.2f})" for r in shifted[:5])
        warnings.append(
            f"train-vs-holdout shift: {len(shifted)} column(s) with PSI >= {PSI_SIGNIFICANT}: "
            f"{listed}; the holdout is later data, so the model meets this shift in production"
        )
    balance, leakage = None, []
    if train_labels is not None and holdout_labels is not None:
        balance = class_balance(train_labels, holdout_labels)
        if 0 < train_labels.sum() < len(train_labels) or holdout_labels.sum() > 0:
            leakage = leakage_scan(
                train_frame, train_labels, holdout_frame, holdout_labels, numeric, categorical
            )
        for row in leakage:
            if row["auroc"] is not None and row["auroc"] >= leakage_auroc:
                warnings.append(
                    f"possible leakage: {row['column']} alone separates the label with AUROC "
                    f"{row['auroc']:.3f} (>= {leakage_auroc}); check that it is known before the "
                    "label is, or drop it from the features"
                )
        positives = balance["holdout"]["positives"]
        if positives < MIN_HOLDOUT_POSITIVES:
            warnings.append(
                f"class imbalance: the holdout has {positives} labelled anomalies "
                f"(< {MIN_HOLDOUT_POSITIVES}), so AUROC/AUPRC are noisy or undefined"
            )
        share = balance["holdout"]["share"] or 0.0
        if share > 0.5:
            warnings.append(
                f"labelled anomalies are {share:.0%} of the holdout: 'anomaly' is not rare here; "
                "check columns.label_positive / label_negative"
            )
    return {"warnings": warnings, "class_balance": balance, "leakage": leakage, "shift": shift}


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
        reconstruct(detector, holdout_frame.loc[normal], scales)
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


def evaluate_challenger(
    detector: Any,
    version: str,
    train_frame: pd.DataFrame,
    train_labels: np.ndarray | None,
    holdout_frame: pd.DataFrame,
    holdout_labels: np.ndarray | None,
    holdout_passthrough: pd.DataFrame | None = None,
    baselines: bool = True,
    leakage_auroc: float = 0.98,
    seed: int = 0,
    fit_frame: pd.DataFrame | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Everything the report shows about a newly trained model.

    ``train_frame`` (with ``train_labels``) is a sample of the training window: shift, leakage
    and class balance are measured against it. ``fit_frame`` is a sample of the rows the model
    could be fitted on (default: ``train_frame``): the baselines are fitted on it and the
    contamination threshold is calibrated on its scores. Returns ``(metrics, holdout_rows)``: metrics as JSON-able
    dicts (see docs/metrics.schema.json) and one row per holdout row with the passthrough columns,
    ``anomaly_score``, ``anomaly_percentile``, ``is_anomaly``, ``top_features``, ``label`` (when
    labelled), ``latent_x``/``latent_y`` and one ``score_<baseline>`` column per baseline.
    """
    numeric, categorical = list(detector.numeric_columns_), list(detector.categorical_columns_)
    scales = reference_scales(
        holdout_frame if holdout_labels is None else holdout_frame.loc[holdout_labels == 0],
        numeric,
    )
    metrics, result = evaluate_detector(detector, holdout_frame, holdout_labels, scales)
    metrics["reconstruction"]["scales"] = {k: _number(v) for k, v in scales.items()}
    fit_frame = train_frame if fit_frame is None else fit_frame
    fit_scores = detector.decision_function(fit_frame)
    history = detector.history_
    metadata = getattr(detector, "metadata_", {})
    metrics["model"] = {
        "version": version,
        "threshold_method": detector.threshold_method,
        "threshold_value": float(detector.threshold_value),
        "threshold": _number(detector.threshold_),
        "latent_dim": int(detector.latent_dim_),
        "n_members": len(detector.networks_),
        "columns": {"numeric": numeric, "categorical": categorical},
    }
    metrics["training"] = {
        "epochs": int(detector.epochs),
        "calibration": metadata.get("calibration"),
        "fit_seconds": _number(metadata.get("fit_seconds")),
        "train_rows": metadata.get("n_train_rows"),
        "validation_rows": metadata.get("n_validation_rows"),
        "epochs_run": int(history.get("epochs_run", len(history.get("train_loss", [])))),
        "best_epoch": int(history.get("best_epoch", 0)),
        "train_loss": [_number(v) for v in history.get("train_loss", [])],
        "val_loss": [_number(v) for v in history.get("val_loss", [])],
    }
    metrics["threshold_policies"] = threshold_policies(
        detector, result.scores, holdout_labels, fit_scores
    )
    rows = (
        holdout_passthrough.reset_index(drop=True).copy()
        if holdout_passthrough is not None
        else pd.DataFrame(index=range(len(holdout_frame)))
    )
    rows["anomaly_score"] = result.scores
    rows["anomaly_percentile"] = result.percentiles
    rows["is_anomaly"] = result.is_anomaly
    rows["top_features"] = result.top_features
    if holdout_labels is not None:
        rows["label"] = holdout_labels.astype(np.int8)
    projection = latent_projection(result.latent)
    rows["latent_x"], rows["latent_y"] = projection[:, 0], projection[:, 1]
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
            rows[f"score_{name}"] = values["scores"]
    from tasks.explanation_check import explanation_check

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
    return metrics, rows


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
    flag_warning = flag_rate_warning(
        int(flags.sum()), int(flags.size), detector.threshold_method,
        float(detector.threshold_value), where,
    )  # fmt: skip
    return [*warnings, *([flag_warning] if flag_warning else [])]


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a registry entry and a Prefect artifact carry: holdout rows, reconstruction
    MSE/RMSE/MAE, flag rate and, with labels, AUROC, AUPRC, precision, recall and F1."""
    reconstruction = metrics.get("reconstruction") or {}
    scores = metrics.get("scores") or {}
    labels = metrics.get("labels") or {}
    return {
        "holdout_rows": scores.get("rows"),
        "reconstruction_mse": reconstruction.get("mse"),
        "reconstruction_rmse": reconstruction.get("rmse"),
        "reconstruction_mae": reconstruction.get("mae"),
        "flag_rate": scores.get("flag_rate"),
        "auroc": labels.get("auroc"),
        "auprc": labels.get("auprc"),
        "precision": labels.get("precision"),
        "recall": labels.get("recall"),
        "f1": labels.get("f1"),
    }


# ----------------------------------------------------------------------------- split plumbing
def _sample_rows(n_rows: int, max_rows: int, seed: int) -> np.ndarray:
    if n_rows <= max_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False))


def evaluate_version(
    models_root: str,
    version: str,
    split: dict[str, Any],
    numeric: Sequence[str],
    categorical: Sequence[str],
    passthrough: Sequence[str] = (),
    exclude_labelled_anomalies: bool = False,
    baselines: bool = True,
    baseline_max_rows: int = 20_000,
    leakage_auroc: float = 0.98,
    seed: int = 0,
    out_dir: str | None = None,
    options: StorageOptions = None,
) -> dict[str, Any]:
    """Evaluate a registered challenger on a split made by
    :func:`tasks.training.split_training_window`.

    Two seeded samples of at most ``baseline_max_rows`` training rows are used: the training window
    as it was (anomalies included) for the data-quality checks, and the rows the model could be
    fitted on (labelled anomalies left out when ``exclude_labelled_anomalies``, as in training) for
    the baselines and the contamination threshold. With ``out_dir`` the per-row holdout results are
    written to ``<out_dir>/holdout_scores.parquet``. Returns the metrics (with
    ``holdout_scores_path``).
    """
    label_column = split.get("label_column")
    detector, _ = ModelRegistry(models_root, options).load(version)
    train_frame, train_labels = load_split(
        split["train_path"], numeric, categorical, label_column, options
    )
    window_rows = _sample_rows(len(train_frame), baseline_max_rows, seed)
    fittable = np.flatnonzero(
        fit_row_mask(
            len(train_frame), train_labels, exclude_labelled_anomalies, len(train_frame), seed
        )
    )
    fit_rows = fittable[_sample_rows(fittable.size, baseline_max_rows, seed)]
    holdout_frame, holdout_labels = load_split(
        split["holdout_path"], numeric, categorical, label_column, options
    )
    passthrough = [c for c in passthrough if c]
    holdout_passthrough = (
        read_table(split["holdout_path"], options, columns=list(passthrough)).to_pandas()
        if passthrough
        else None
    )
    metrics, rows = evaluate_challenger(
        detector,
        version,
        train_frame.iloc[window_rows].reset_index(drop=True),
        train_labels[window_rows] if train_labels is not None else None,
        holdout_frame,
        holdout_labels,
        holdout_passthrough,
        baselines,
        leakage_auroc,
        seed,
        fit_frame=train_frame.iloc[fit_rows].reset_index(drop=True),
    )
    metrics["split"] = {k: v for k, v in split.items() if not k.endswith("_path")}
    metrics["split"].setdefault("label_note", None)
    if metrics["split"]["label_note"]:
        metrics["data_quality"]["warnings"].append(metrics["split"]["label_note"])
    metrics["split"]["evaluation_train_rows"] = int(len(window_rows))
    metrics["holdout_scores_path"] = None
    if out_dir is not None:
        path = join(out_dir, HOLDOUT_SCORES_FILE)
        write_parquet_atomic(
            pa.Table.from_pandas(rows, preserve_index=False), path, options=options
        )
        metrics["holdout_scores_path"] = path
    return metrics


def evaluate_champion(
    models_root: str,
    challenger_version: str,
    split: dict[str, Any],
    scales: dict[str, float],
    options: StorageOptions = None,
) -> dict[str, Any] | None:
    """The champion on the challenger's holdout rows, with the challenger's error units.

    Returns None when there is no champion (or the challenger already is it), else
    ``{"version", "reconstruction", "scores", "labels", "error"}``; ``error`` (and no metrics) when
    the champion cannot score these rows, e.g. it was fitted on columns the data no longer has.
    """
    registry = ModelRegistry(models_root, options)
    version = registry.champion()
    if version is None or version == challenger_version:
        return None
    label_column = split.get("label_column")
    try:
        detector, _ = registry.load(version)
        frame, labels = load_split(
            split["holdout_path"],
            list(detector.numeric_columns_),
            list(detector.categorical_columns_),
            label_column,
            options,
        )
        metrics, _ = evaluate_detector(detector, frame, labels, scales)
    # A bundle that fails its checksums (BundleError is a ValueError), a missing bundle, or columns
    # the holdout does not have: the champion cannot score these rows, and the gate says so.
    except (ValueError, KeyError, TypeError, RegistryError, pa.ArrowInvalid) as exc:
        return {
            "version": version,
            "reconstruction": None,
            "scores": None,
            "labels": None,
            "error": f"{type(exc).__name__}: {exc}",
        }
    return {"version": version, **metrics, "error": None}


# ------------------------------------------------------------------------------ Prefect tasks
@task(name="evaluate-challenger", cache_policy=NO_CACHE)
def evaluate_task(
    models_root: str,
    version: str,
    split: dict[str, Any],
    numeric: list[str],
    categorical: list[str],
    passthrough: list[str],
    exclude_labelled_anomalies: bool,
    baselines: bool,
    baseline_max_rows: int,
    leakage_auroc: float,
    seed: int,
    out_dir: str,
    options: StorageOptions = None,
) -> dict[str, Any]:
    return evaluate_version(
        models_root,
        version,
        split,
        numeric,
        categorical,
        passthrough,
        exclude_labelled_anomalies,
        baselines,
        baseline_max_rows,
        leakage_auroc,
        seed,
        out_dir,
        options,
    )


@task(name="evaluate-champion", cache_policy=NO_CACHE)
def evaluate_champion_task(
    models_root: str,
    challenger_version: str,
    split: dict[str, Any],
    scales: dict[str, float],
    options: StorageOptions = None,
) -> dict[str, Any] | None:
    return evaluate_champion(models_root, challenger_version, split, scales, options)
