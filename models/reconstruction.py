"""Rows as the model expects them, one column per original column: reconstructing and decoding.

:func:`models.explanations.reconstruction_of` turns the network's outputs into expected values (the
preprocessing inverted) and level probabilities; this module lays them out as rows:

- :func:`reconstruct` -- rows -> the rows the model expects (encode, then decode);
- :func:`decode` -- encoded features ``z`` (what ``transform`` returns) -> the rows they stand for;
- :func:`expected_frame` -- a reconstruction -> a frame with the detector's columns;
- :func:`reconstruction_of_rows` -- rows -> the preprocessed rows and their reconstruction, as
  numbers (``AutoencoderDetector.reconstruct``; evaluation measures its errors on it).

Numeric columns are float64 in the column's own units (a flag column: the one of its two values
the model finds more likely); categorical columns are the most likely level's text,
``"infrequent"`` for the group of rare levels, None when the most likely level is "missing".
With an ensemble, the members' outputs are averaged (values) and their level probabilities too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from models.explanations import Reconstruction, reconstruction, reconstruction_of
from models.network import pad_rows
from models.preprocessing import INPUT_CLIP, MISSING_LEVEL, as_frame, normalise_frame

if TYPE_CHECKING:
    from models.detector import AutoencoderDetector


def expected_frame(
    detector: AutoencoderDetector, expected: Reconstruction, index: pd.Index | None = None
) -> pd.DataFrame:
    """A :class:`Reconstruction` of n rows -> (n, n_columns) frame, ``feature_names_in_`` order."""
    layout = detector.layout_
    names = [str(c) for c in detector.feature_names_in_]
    n_rows = expected.values.shape[0]
    columns: dict[str, object] = {}
    for j, column in enumerate(layout.value_columns):
        columns[names[column]] = expected.values[:, j]
    first = layout.categorical_blocks[0][0] if layout.categorical_blocks else layout.n_features
    n_flags = len(layout.binary_values)
    for block, (start, stop, column) in enumerate(layout.categorical_blocks):
        likeliest = expected.probabilities[:, start - first : stop - first].argmax(axis=1)
        if block < n_flags:  # a flag column: its low or high value, as a number
            columns[names[column]] = np.asarray(layout.binary_values[block], np.float64)[likeliest]
        else:
            levels = layout.levels[block]
            text = np.array([None if v == MISSING_LEVEL else v for v in levels], dtype=object)
            columns[names[column]] = text[likeliest]
    frame = pd.DataFrame(columns, index=index if index is not None else pd.RangeIndex(n_rows))
    return frame[names]


@torch.inference_mode()
def reconstruct(detector: AutoencoderDetector, X) -> pd.DataFrame:
    """(n, n_columns) rows -> (n, n_columns) frame of the rows the model expects (same index)."""
    features = detector._features(X)
    n_rows = features.shape[0]
    padded = pad_rows(features)  # the same bits for a row alone or among others
    outputs = [network(padded)[0][:n_rows] for network in detector.networks_]
    index = X.index if isinstance(X, pd.DataFrame) else None
    return expected_frame(detector, reconstruction_of(detector, outputs), index)


@torch.inference_mode()
def decode(detector: AutoencoderDetector, z) -> pd.DataFrame:
    """(n, latent_dim_) encoded features, as ``transform`` returns them -> (n, n_columns) frame of
    the rows they decode to. The encoded features are turned back into the network's codes (the
    latent rotation inverted) and each member decodes its part."""
    encoded = np.asarray(z, dtype=np.float64)
    if encoded.ndim != 2 or encoded.shape[1] != detector.latent_dim_:
        raise ValueError(
            f"z must have shape (n_rows, {detector.latent_dim_}) (the model's z_0..z_"
            f"{detector.latent_dim_ - 1}), got {encoded.shape}; send every z column"
        )
    if not np.isfinite(encoded).all():
        raise ValueError("z must hold finite numbers; a NaN or infinite code cannot be decoded")
    rotation = getattr(detector, "latent_rotation_", None)
    codes = rotation.invert(encoded) if rotation is not None else encoded.astype(np.float32)
    n_rows = codes.shape[0]
    width = detector.latent_dim_ // len(detector.networks_)
    tensor = pad_rows(torch.from_numpy(codes).to(detector.device_))
    outputs = [
        network.decode(tensor[:, member * width : (member + 1) * width])[:n_rows]
        for member, network in enumerate(detector.networks_)
    ]
    return expected_frame(detector, reconstruction_of(detector, outputs))


# Rows per forward pass when reconstructing rows: bounded activation memory on wide frames.
RECONSTRUCT_CHUNK_ROWS = 32_768


@dataclass(frozen=True)
class RowReconstruction:
    """n rows as the model saw them and as it reconstructed them (ensemble-averaged).

    Attributes:
        inputs: (n, n_features) float32, the rows through the fitted preprocessing (clipped to
            ``INPUT_CLIP``), one-hot blocks included.
        values: (n, n_values) float64, numeric reconstructions in the columns' own units
            (``layout_.value_columns`` order).
        probabilities: (n, n_levels) float64, the predicted level probabilities of every
            categorical block (flag columns first), ``layout_.categorical_blocks`` order.
    """

    inputs: np.ndarray
    values: np.ndarray
    probabilities: np.ndarray


def reconstruction_of_rows(detector: AutoencoderDetector, X) -> RowReconstruction:
    """(n, n_columns) rows -> :class:`RowReconstruction`, in chunks of
    :data:`RECONSTRUCT_CHUNK_ROWS` rows through ``preprocessor_`` itself (not its numpy replay)."""
    numeric, categorical = list(detector.numeric_columns_), list(detector.categorical_columns_)
    normalised = normalise_frame(as_frame(X), numeric, categorical)
    inputs = detector.preprocessor_.transform(normalised).astype(np.float32, copy=False)
    inputs = np.clip(inputs, -INPUT_CLIP, INPUT_CLIP)
    chunks = max(1, -(-len(inputs) // RECONSTRUCT_CHUNK_ROWS))
    parts = [
        reconstruction(detector, torch.from_numpy(chunk).to(detector.device_))
        for chunk in np.array_split(inputs, chunks)
    ]
    values = np.concatenate([p.values for p in parts]) if parts else np.zeros((0, 0))
    probabilities = np.concatenate([p.probabilities for p in parts]) if parts else np.zeros((0, 0))
    return RowReconstruction(inputs=inputs, values=values, probabilities=probabilities)
