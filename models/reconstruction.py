"""What the model expects a row to be: its reconstruction in the columns' own units and levels.

The network's output for a row is its expectation of that row in the preprocessed space: a scaled
value for each numeric column (then its missing indicator) and one logit per one-hot level of each
categorical column. This module maps that output back through the fitted preprocessing:

- :func:`reconstruct` -- rows -> the rows the model expects (encode, then decode);
- :func:`decode` -- encoded features ``z`` (what ``transform`` returns) -> the rows they stand for;
- :func:`directions` -- for each column of each row, how the observed value deviates from the
  expected one: ``"above"``, ``"below"``, ``"unexpected level"``, ``"missing"`` or
  ``"as expected"``.

With an ensemble, numeric values are the members' mean and categorical levels the most likely level
under the members' mean probabilities. Numeric values are returned as float64 in the column's units
(the scaler inverted); categorical values as the level's text, ``"infrequent"`` for the group of rare
levels and None when the most likely level is "missing".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch.nn import functional

from models.network import pad_rows
from models.preprocessing import MISSING_LEVEL, as_frame, normalise_frame

if TYPE_CHECKING:
    from models.detector import AutoencoderDetector

DIRECTIONS = ("above", "below", "unexpected level", "missing", "as expected")


def _expected_frame(
    detector: AutoencoderDetector, outputs: list[torch.Tensor], index: pd.Index | None = None
) -> pd.DataFrame:
    """Members' outputs, each (n, n_features) -> (n, n_columns) frame of expected values."""
    layout = detector.layout_
    numeric = list(detector.numeric_columns_)
    n_rows = outputs[0].shape[0] if outputs else 0
    columns: dict[str, object] = {}
    if numeric:
        scaled = torch.stack([o[:, : len(numeric)].double() for o in outputs]).mean(dim=0)
        columns.update(zip(numeric, _unscale(detector, scaled.cpu().numpy()).T, strict=True))
    for (start, stop, column), levels in zip(layout.categorical_blocks, layout.levels, strict=True):
        probabilities = torch.stack(
            [functional.softmax(o[:, start:stop].float(), dim=1) for o in outputs]
        ).mean(dim=0)
        names = np.array([None if level == MISSING_LEVEL else level for level in levels], object)
        columns[layout.columns[column]] = names[probabilities.argmax(dim=1).cpu().numpy()]
    frame = pd.DataFrame(columns, index=index if index is not None else pd.RangeIndex(n_rows))
    return frame[list(detector.feature_names_in_)]


def _unscale(detector: AutoencoderDetector, scaled: np.ndarray) -> np.ndarray:
    """(n, n_numeric) scaled values -> (n, n_numeric) float64 in the columns' own units."""
    scaler = detector.preprocessor_.named_transformers_["numeric"].named_steps["scale"]
    if isinstance(scaler, str) or scaler is None or not len(scaled):  # "passthrough", no rows
        return scaled
    return np.asarray(scaler.inverse_transform(scaled), dtype=np.float64)


@torch.inference_mode()
def reconstruct(detector: AutoencoderDetector, X) -> pd.DataFrame:
    """(n, n_columns) rows -> (n, n_columns) frame of the rows the model expects (same index),
    columns in ``detector.feature_names_in_`` order."""
    features = detector._features(X)
    n_rows = features.shape[0]
    padded = pad_rows(features)  # the same bits for a row alone or among others
    outputs = [network(padded)[0][:n_rows] for network in detector.networks_]
    index = X.index if isinstance(X, pd.DataFrame) else None
    return _expected_frame(detector, outputs, index)


@torch.inference_mode()
def decode(detector: AutoencoderDetector, z) -> pd.DataFrame:
    """(n, latent_dim_) encoded features (members' codes side by side, as ``transform`` returns
    them) -> (n, n_columns) frame of the rows they decode to."""
    codes = np.asarray(z, dtype=np.float32)
    if codes.ndim != 2 or codes.shape[1] != detector.latent_dim_:
        raise ValueError(
            f"z must have shape (n_rows, {detector.latent_dim_}) (the model's z_0..z_"
            f"{detector.latent_dim_ - 1}), got {codes.shape}; send every z column"
        )
    if not np.isfinite(codes).all():
        raise ValueError("z must hold finite numbers; a NaN or infinite code cannot be decoded")
    width = detector.latent_dim_ // len(detector.networks_)
    tensor = pad_rows(torch.from_numpy(codes).to(detector.device_))
    outputs = [
        network.decode(tensor[:, member * width : (member + 1) * width])[: codes.shape[0]]
        for member, network in enumerate(detector.networks_)
    ]
    return _expected_frame(detector, outputs)


def directions(detector: AutoencoderDetector, X, expected: pd.DataFrame) -> pd.DataFrame:
    """(n, n_columns) observed rows and the ``expected`` ones (from :func:`reconstruct`) -> (n,
    n_columns) frame of :data:`DIRECTIONS`: a numeric value above or below the expected one (or
    missing), a categorical level other than the most likely one (an unseen level included)."""
    frame = as_frame(X)
    numeric, categorical = list(detector.numeric_columns_), list(detector.categorical_columns_)
    observed = normalise_frame(frame, numeric, categorical)
    result: dict[str, np.ndarray] = {}
    for name in numeric:
        values = observed[name].to_numpy(dtype=np.float64)
        wanted = expected[name].to_numpy(dtype=np.float64)
        result[name] = np.select(
            [np.isnan(values), values > wanted, values < wanted],
            ["missing", "above", "below"],
            "as expected",
        ).astype(object)
    for name, known in zip(categorical, detector.layout_.levels, strict=True):
        levels = observed[name].to_numpy(dtype=object)
        missing = levels == MISSING_LEVEL
        if "infrequent" in known:  # a rare level is expected as its group, "infrequent"
            known_set = set(known)
            levels = np.array([v if v in known_set else "infrequent" for v in levels], object)
        wanted = expected[name].to_numpy(dtype=object)
        wanted_missing = pd.isna(wanted)
        same = np.where(missing, wanted_missing, levels == wanted)
        result[name] = np.where(
            same, "as expected", np.where(missing, "missing", "unexpected level")
        ).astype(object)
    return pd.DataFrame(result, index=expected.index)[list(detector.feature_names_in_)]
