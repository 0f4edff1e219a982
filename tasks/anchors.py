"""Classical anomaly detectors that aeflow is measured against ("anchors").

The evaluation report and every benchmark fit the same anchors on the same rows: Isolation Forest,
ECOD, HBOS, KNN, PCA, and, where PyOD is installed (the ``bench`` extra), PyOD's AutoEncoder and DIF.
With PyOD installed every anchor is PyOD's own implementation with its defaults (the benchmarks'
reference); without it the first five come from scikit-learn or from the small implementations
below, which follow PyOD's definitions and defaults (tests compare them):

- ``IForest``: scikit-learn's IsolationForest, 100 trees; score = minus its ``score_samples``.
- ``ECOD``: empirical cumulative distribution per feature (Li et al., 2022): per feature the larger
  of the left- and right-tail surprisals ``-log P``, summed (PyOD refits the distribution on the
  training and scored rows together; here it is the training rows' alone, so a row's score does not
  depend on the batch it arrives in).
- ``HBOS``: a 10-bin histogram per feature (alpha 0.1 added to every density; a value outside the
  training range by less than half a bin takes the outermost bin, farther out the smallest
  density), summed ``-log density``.
- ``KNN``: distance to the 5th nearest training row (scikit-learn's NearestNeighbors).
- ``PCA``: PyOD's definition on standardised features: the sum over principal components (as many
  as the matrix has rank) of the row's distance to the component vector divided by the
  component's explained variance ratio.

Every anchor takes a numeric matrix (the caller one-hot encodes and scales categoricals) and scores
with higher = more anomalous.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from models import calibration
from models.preprocessing import as_frame, clipped_features, normalise_frame
from tasks.holdout_metrics import json_number, label_metrics

ANCHORS = ("IForest", "ECOD", "HBOS", "KNN", "PCA", "AutoEncoder", "DIF")
# The evaluation fits the slow anchors on at most SLOW_ANCHOR_ROWS rows.
SLOW_ANCHORS, SLOW_ANCHOR_ROWS = ("KNN", "AutoEncoder", "DIF"), 5_000
# Anchors that exist only through PyOD (skipped without it).
PYOD_ONLY = ("AutoEncoder", "DIF")


def pyod_available() -> bool:
    """Whether PyOD (the ``bench`` extra) can be imported."""
    return importlib.util.find_spec("pyod") is not None


def available_anchors(names: Sequence[str] = ANCHORS) -> list[str]:
    """``names`` without the PyOD-only anchors when PyOD is not installed."""
    have_pyod = pyod_available()
    return [name for name in names if have_pyod or name not in PYOD_ONLY]


def make_anchor(name: str, seed: int, use_pyod: bool | None = None):
    """An unfitted anchor with ``fit(X)`` and ``decision_function(X)``; PyOD's when ``use_pyod``
    (default: when installed)."""
    if name not in ANCHORS:
        raise ValueError(f"unknown anchor {name!r}; use one of {ANCHORS}")
    if use_pyod is None:
        use_pyod = pyod_available()
    if name in PYOD_ONLY and not use_pyod:
        raise ValueError(f"the {name} anchor needs PyOD: pip install -e '.[bench]'")
    if use_pyod:
        return _pyod_anchor(name, seed)
    return {
        "IForest": lambda: IsolationForestAnchor(seed),
        "ECOD": ECODAnchor,
        "HBOS": HBOSAnchor,
        "KNN": KNNAnchor,
        "PCA": PCAAnchor,
    }[name]()


def _pyod_anchor(name: str, seed: int):
    if name == "IForest":
        from pyod.models.iforest import IForest

        return IForest(random_state=seed)
    if name == "ECOD":
        from pyod.models.ecod import ECOD

        return ECOD()
    if name == "HBOS":
        from pyod.models.hbos import HBOS

        return HBOS()
    if name == "KNN":
        from pyod.models.knn import KNN

        return KNN()
    if name == "PCA":
        return _PyODPCA(seed)
    if name == "AutoEncoder":
        from pyod.models.auto_encoder import AutoEncoder

        return AutoEncoder(random_state=seed, verbose=0)
    from pyod.models.dif import DIF

    return DIF(random_state=seed)


class _PyODPCA:
    """PyOD's PCA detector keeping as many components as the standardised training matrix has
    rank: PyOD divides by each component's variance, so a zero-variance component (a constant or
    collinear column) would give infinite scores; on full-rank data this is PyOD's default."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, X):
        from pyod.models.pca import PCA
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=np.float64)
        rank = int(np.linalg.matrix_rank(StandardScaler().fit_transform(X)))
        self.model = PCA(random_state=self.seed, n_components=max(1, rank)).fit(X)
        return self

    def decision_function(self, X):
        return self.model.decision_function(np.asarray(X, dtype=np.float64))


class IsolationForestAnchor:
    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, X):
        from sklearn.ensemble import IsolationForest

        self.model = IsolationForest(n_estimators=100, random_state=self.seed).fit(X)
        return self

    def decision_function(self, X):
        return -self.model.score_samples(X)


class ECODAnchor:
    """ECOD: per feature, the empirical left and right tail shares of a value among the training
    values; the score sums over features the larger ``-log`` tail share (both when the feature's
    skewness is exactly 0, as PyOD does)."""

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.sorted_ = np.sort(X, axis=0)
        centred = X - X.mean(axis=0)
        spread = (centred**2).mean(axis=0) ** 1.5
        with np.errstate(invalid="ignore", divide="ignore"):
            self.symmetric_ = np.nan_to_num((centred**3).mean(axis=0) / spread) == 0
        return self

    def decision_function(self, X):
        X = np.asarray(X, dtype=np.float64)
        n = self.sorted_.shape[0]
        left = np.empty_like(X)
        right = np.empty_like(X)
        for j in range(X.shape[1]):
            column = self.sorted_[:, j]
            left[:, j] = np.searchsorted(column, X[:, j], side="right") / n
            right[:, j] = (n - np.searchsorted(column, X[:, j], side="left")) / n
        # A value beyond every training value has tail share 0: PyOD's ECDF gives it 1/n at most
        # through its own ranking; clipping at 1/(n+1) keeps the log finite the same way.
        floor = 1.0 / (n + 1)
        u_left = -np.log(np.clip(left, floor, 1.0))
        u_right = -np.log(np.clip(right, floor, 1.0))
        per_feature = np.where(self.symmetric_, u_left + u_right, np.maximum(u_left, u_right))
        return per_feature.sum(axis=1)


class HBOSAnchor:
    """HBOS (PyOD's static-bin definition): 10 equal-width bins per feature over its training
    range, densities smoothed by alpha 0.1; a value outside the range within ``tol`` bin widths
    takes its nearest bin, farther out the smallest density."""

    def __init__(self, n_bins: int = 10, alpha: float = 0.1, tol: float = 0.5):
        self.n_bins, self.alpha, self.tol = n_bins, alpha, tol

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.edges_, self.densities_ = [], []
        for j in range(X.shape[1]):
            counts, edges = np.histogram(X[:, j], bins=self.n_bins)
            widths = np.diff(edges)
            widths = np.where(widths > 0, widths, 1.0)
            self.edges_.append(edges)
            self.densities_.append(counts / widths / X.shape[0] + self.alpha)
        return self

    def decision_function(self, X):
        X = np.asarray(X, dtype=np.float64)
        total = np.zeros(X.shape[0])
        for j in range(X.shape[1]):
            edges, density = self.edges_[j], self.densities_[j]
            # Bins are (left, right] like PyOD's (np.digitize with right=True); index 0 and
            # n_bins + 1 are below and above the training range.
            index = np.digitize(X[:, j], edges, right=True)
            value = density[np.clip(index - 1, 0, self.n_bins - 1)]
            below = (index == 0) & (edges[0] - X[:, j] > self.tol * (edges[1] - edges[0]))
            above = (index == self.n_bins + 1) & (
                X[:, j] - edges[-1] > self.tol * (edges[-1] - edges[-2])
            )
            value = np.where(below | above, density.min(), value)
            total += -np.log(value)
        return total


class KNNAnchor:
    """Distance to the 5th nearest training row (PyOD KNN's default, method "largest")."""

    def __init__(self, n_neighbors: int = 5):
        self.n_neighbors = n_neighbors

    def fit(self, X):
        from sklearn.neighbors import NearestNeighbors

        X = np.asarray(X, dtype=np.float64)
        self.model = NearestNeighbors(n_neighbors=min(self.n_neighbors, len(X))).fit(X)
        return self

    def decision_function(self, X):
        distances, _ = self.model.kneighbors(np.asarray(X, dtype=np.float64))
        return distances[:, -1]


class PCAAnchor:
    """PyOD's PCA detector: standardise, keep as many components as the matrix has rank, and sum
    each row's Euclidean distance to every component vector divided by the component's explained
    variance ratio (so the low-variance components weigh most)."""

    def fit(self, X):
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=np.float64)
        self.scaler = StandardScaler().fit(X)
        standardised = self.scaler.transform(X)
        pca = PCA(n_components=min(standardised.shape), svd_solver="full").fit(standardised)
        # The rank by numpy.linalg.matrix_rank's tolerance, from the singular values the fit
        # computed (a second decomposition cost as much as the fit: ~30 s at 3,000 columns).
        singular = pca.singular_values_
        tolerance = singular.max(initial=0.0) * max(standardised.shape) * np.finfo(float).eps
        rank = max(1, int((singular > tolerance).sum()))
        self.components_ = pca.components_[:rank]
        self.weights_ = np.maximum(pca.explained_variance_ratio_[:rank], 1e-300)
        return self

    def decision_function(self, X):
        standardised = self.scaler.transform(np.asarray(X, dtype=np.float64))
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2: one matrix product (scipy's cdist runs a loop
        # per pair: minutes for a thousand rows of 3,000 features); the same distances to
        # within float rounding.
        squared = (
            np.einsum("ij,ij->i", standardised, standardised)[:, None]
            - 2.0 * standardised @ self.components_.T
            + np.einsum("ij,ij->i", self.components_, self.components_)[None, :]
        )
        return (np.sqrt(np.maximum(squared, 0.0)) / self.weights_).sum(axis=1)


def fit_score(name: str, seed: int, train: np.ndarray, rows: Sequence[np.ndarray], use_pyod=None):
    """Fit anchor ``name`` on ``train`` (n, d) and score each matrix in ``rows``; returns the list of
    (m_i,) float64 score arrays (non-finite scores replaced by the largest finite one)."""
    model = make_anchor(name, seed, use_pyod)
    model.fit(np.asarray(train, dtype=np.float64))
    out = []
    for matrix in rows:
        scores = np.asarray(model.decision_function(np.asarray(matrix, dtype=np.float64)), float)
        finite = scores[np.isfinite(scores)]
        top = finite.max() if finite.size else 0.0
        out.append(np.nan_to_num(scores, nan=top, posinf=top, neginf=finite.min(initial=0.0)))
    return out


# ------------------------------------------------------------------- anchors beside a detector
def preprocessed(detector: Any, frame: pd.DataFrame) -> np.ndarray:
    """(n, n_features) float32: ``frame`` through the detector's fitted preprocessing (clipped as
    the detector clips its inputs): the matrix the anchors are fitted and scored on."""
    normalised = normalise_frame(
        as_frame(frame), detector.numeric_columns_, detector.categorical_columns_
    )
    return clipped_features(detector.preprocessor_, normalised)


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
    for name in available_anchors(anchors or ANCHORS):
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
            "threshold": json_number(fitted["threshold"]),
            "flag_rate": json_number((scores > fitted["threshold"]).mean()),
            "rank_correlation": json_number(correlation),
            "labels": None,
        }
        if labels is not None:
            row["labels"] = label_metrics(labels, scores, fitted["threshold"])
        rows.append(row)
    return rows
