"""Reconstruction errors of a detector on holdout rows, in units every model shares.

Numeric errors are divided by the holdout's own per-column spread (:func:`reference_scales`), not
by a model's scaling, so a challenger and the champion evaluated on the same rows can be compared
(the promotion gate does, tasks/gate.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.preprocessing import as_frame, normalise_frame
from tasks.holdout_metrics import json_number


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
class ReconstructionErrors:
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


def reconstruction_errors(
    detector: Any, frame: pd.DataFrame, scales: dict[str, float]
) -> ReconstructionErrors:
    """Reconstruct ``frame`` (n rows) with a fitted AutoencoderDetector (its public
    :meth:`~models.detector.AutoencoderDetector.reconstruct`) and measure the errors.

    Numeric reconstructions are mapped back to the column's own units with the inverse of the
    model's preprocessing (a flag column: the expectation of its two values under the predicted
    probabilities), then divided by ``scales`` (see :func:`reference_scales`): errors do not depend
    on how a model scaled its inputs.
    """
    numeric = list(detector.numeric_columns_)
    categorical = list(detector.categorical_columns_)
    normalised = normalise_frame(as_frame(frame), numeric, categorical)
    rows = detector.reconstruct(normalised)
    inputs, values, probabilities = rows.inputs, rows.values, rows.probabilities
    layout = detector.layout_
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
    return ReconstructionErrors(tuple(numeric + categorical), kinds, squared, absolute, correct)


def reconstruction_metrics(reconstruction: ReconstructionErrors) -> dict[str, Any]:
    """MSE, RMSE and MAE overall and per column from :func:`reconstruction_errors`.

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
                "mse": json_number(mse),
                "rmse": json_number(math.sqrt(mse)) if mse is not None else None,
                "mae": json_number(reconstruction.absolute[observed, j].mean()) if rows else None,
                "accuracy": (
                    json_number(reconstruction.correct[:, j - n_numeric].mean())
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
        "mse": json_number(mse),
        "rmse": json_number(math.sqrt(mse)) if mse is not None else None,
        "mae": json_number(np.mean(maes)) if maes else None,
        "per_column": per_column,
    }
