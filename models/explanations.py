"""What the scoring job writes per row, and explanations: top columns, direction, expected value.

:class:`ScoreResult` carries a forward pass's outputs. :func:`top_indices` (over
``ColumnScorer.ranking_key``, in ``ColumnScorer.first_columns``) and :func:`top_feature_strings`
name each row's first causes.
:func:`reconstruction` maps the network's output back to each column's own units (the value the
model expected), and :func:`explanation_details` lays out, for each row's top columns, the
contribution, the direction of the deviation (``"above"`` / ``"below"`` what the model expected for
a numeric or flag column, ``"unexpected level"`` for a categorical one) and the observed and
expected values.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from models.detector import AutoencoderDetector

DIRECTIONS = ("above", "below", "unexpected level", "as expected")


@dataclass(frozen=True)
class ScoreResult:
    """Everything the scoring job writes for n rows, from one forward pass.

    Attributes:
        scores: (n,) float64 anomaly scores, higher = more anomalous.
        percentiles: (n,) float64 in [0, 1], share of validation rows scoring at or below.
        is_anomaly: (n,) bool, ``scores > threshold``.
        latent: (n, latent_dim) float32 encoded features (whitened principal axes of the code, see
            :mod:`models.latent`).
        top_features: n strings, each the names of the row's first ``top_k`` columns as
            ``ColumnScorer.ranking_key`` ranks them, joined by ``","`` (first cause first), e.g.
            ``"amount,merchant,hour"``; a column contributing 0 is left out (a row with nothing
            unusual: ``""``).
        contributions: (n, n_columns) float32 per-column score contributions (they sum to
            ``scores``), columns in ``detector.feature_names_in_`` order.
    """

    scores: np.ndarray
    percentiles: np.ndarray
    is_anomaly: np.ndarray
    latent: np.ndarray
    top_features: list[str]
    contributions: np.ndarray


# Up to this many columns, top_indices picks them by repeated argmax (one pass each) rather than
# by a partition of every row.
ARGMAX_TOP_K = 8


def top_indices(contributions: np.ndarray, top_k: int) -> np.ndarray:
    """(n, c) -> (n, min(top_k, c)) column indices of the largest contributions, largest first;
    equal contributions (e.g. several columns at 0, nothing unusual) in column order."""
    n_rows, n_columns = contributions.shape
    k = min(top_k, n_columns)
    if k < n_columns and k <= ARGMAX_TOP_K and _finite_below(contributions):
        return _top_by_argmax(contributions, k)
    if k < n_columns:
        kth = -np.partition(-contributions, k - 1, axis=1)[:, k - 1 : k]
        greater = contributions > kth
        equal = contributions == kth
        # Every column above the k-th value, then the first columns equal to it.
        need = k - greater.sum(axis=1, keepdims=True)
        take = greater | (equal & (np.cumsum(equal, axis=1) <= need))
        candidates = np.nonzero(take)[1].reshape(n_rows, k)
    else:
        candidates = np.broadcast_to(np.arange(k), contributions.shape).copy()
    picked = np.take_along_axis(contributions, candidates, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def _finite_below(values: np.ndarray) -> bool:
    """Floats without NaN or -infinity (what :func:`_top_by_argmax` needs)."""
    if not np.issubdtype(values.dtype, np.floating):
        return False
    return bool((values >= -np.finfo(values.dtype).max).all())


def _top_by_argmax(contributions: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_indices` by ``k`` passes of argmax, each column taken set to -infinity for the
    next: argmax returns the first of equal values, so ties come in column order as there. About
    3x cheaper than the partition for a few columns; needs values without NaN or -infinity."""
    remaining = contributions.copy()
    top = np.empty((contributions.shape[0], k), dtype=np.int64)
    rows = np.arange(contributions.shape[0])
    for position in range(k):
        top[:, position] = remaining.argmax(axis=1)
        if position + 1 < k:
            remaining[rows, top[:, position]] = -np.inf
    return top


def top_feature_strings(
    top: np.ndarray, names: list[str], contributions: np.ndarray | None = None
) -> list[str]:
    """(n, k) column indices -> n strings ``"col_a,col_b,..."``. With ``contributions`` (n,
    n_columns), a column whose contribution is 0 is left out: it explains nothing, so a row with
    nothing unusual names no column (an empty string). Rows share few distinct combinations, so
    each distinct one is joined once."""
    if top.shape[0] == 0:
        return []
    n_columns = len(names)
    if contributions is not None:
        # The sentinel index n_columns stands for "no column here".
        top = np.where(np.take_along_axis(contributions, top, axis=1) > 0, top, n_columns)
    base = n_columns + 1
    if base ** top.shape[1] < 2**62:
        # One integer per combination (base n_columns + 1 digits): a 1-D unique is far cheaper
        # than a row-wise one.
        keys = np.zeros(top.shape[0], dtype=np.int64)
        for position in range(top.shape[1]):
            keys *= base
            keys += top[:, position]
        unique_keys, row_combination = np.unique(keys, return_inverse=True)
        combinations = np.empty((len(unique_keys), top.shape[1]), dtype=np.int64)
        for position in reversed(range(top.shape[1])):
            combinations[:, position] = unique_keys % base
            unique_keys = unique_keys // base
    else:
        combinations, row_combination = np.unique(top, axis=0, return_inverse=True)
    # Joined column by column over all combinations at once (object arrays add their strings in
    # one C loop): a request of 1,000 rows has hundreds of distinct combinations.
    labels = np.asarray([*names, ""], dtype=object)[combinations]
    shown = combinations < n_columns
    joined = np.where(shown[:, 0], labels[:, 0], "")
    started = shown[:, 0].copy()
    for position in range(1, labels.shape[1]):
        piece = np.where(started, "," + labels[:, position], labels[:, position])
        joined = np.where(shown[:, position], joined + piece, joined)
        started |= shown[:, position]
    return joined[row_combination.reshape(-1)].tolist()


@dataclass(frozen=True)
class Reconstruction:
    """The model's expectation for n preprocessed rows.

    Attributes:
        values: (n, n_values) float64 expected value of each non-flag numeric column, in the
            column's own units (the preprocessing inverted).
        scaled_values: (n, n_values) the same in the preprocessed (scaled) units.
        probabilities: (n, n_level_features) level probabilities of every flag and categorical
            block (each block sums to 1), averaged over the ensemble.
    """

    values: np.ndarray
    scaled_values: np.ndarray
    probabilities: np.ndarray


@torch.inference_mode()
def reconstruction(detector: AutoencoderDetector, features: torch.Tensor) -> Reconstruction:
    """The ensemble-averaged reconstruction of (n, n_features) preprocessed rows."""
    return reconstruction_of(detector, [network(features)[0] for network in detector.networks_])


@torch.inference_mode()
def reconstruction_of(detector: AutoencoderDetector, outputs: list[torch.Tensor]) -> Reconstruction:
    """The ensemble-averaged :class:`Reconstruction` of the members' network outputs, each
    (n, n_features): what the rows were reconstructed as, or what codes decode to."""
    layout = detector.layout_
    n_values = len(layout.value_columns)
    blocks = [(start, stop) for start, stop, _ in layout.categorical_blocks]
    first = blocks[0][0] if blocks else layout.n_features
    total = None
    for output in outputs:
        output = output.float()
        parts = [output[:, :first]] + [torch.softmax(output[:, a:b], dim=1) for a, b in blocks]
        output = torch.cat(parts, dim=1)
        total = output if total is None else total + output
    averaged = (total / len(outputs)).double().cpu().numpy()
    scaled = averaged[:, :n_values]
    return Reconstruction(
        values=unscale_values(detector, scaled),
        scaled_values=scaled,
        probabilities=averaged[:, first:],
    )


def unscale_values(detector: AutoencoderDetector, scaled: np.ndarray) -> np.ndarray:
    """(n, n_values) scaled numeric values -> the columns' own units (each value block's steps
    after the imputer inverted; an ``"none"`` scaling is the identity)."""
    values = np.array(scaled, dtype=np.float64)
    if not len(values):  # no rows: scikit-learn's inverse transforms refuse an empty matrix
        return values
    offset = 0
    for name, pipeline, columns in detector.preprocessor_.transformers_:
        if name not in ("numeric", "skewed"):
            continue
        part = values[:, offset : offset + len(columns)]
        for _step, transform in reversed(pipeline.steps[1:]):  # the imputer has nothing to invert
            if not (isinstance(transform, str) and transform == "passthrough") and transform:
                # A reconstruction beyond what a quantile transform can reach inverts to NaN;
                # scikit-learn warns, the NaN says "no finite expectation".
                with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
                    warnings.simplefilter("ignore", UserWarning)
                    part = transform.inverse_transform(part)
        values[:, offset : offset + len(columns)] = part
        offset += len(columns)
    return values


def explanation_details(
    detector: AutoencoderDetector,
    frame: pd.DataFrame,
    features: torch.Tensor,
    contributions: np.ndarray,
    top_k: int,
    index: pd.Index,
) -> pd.DataFrame:
    """Long table of each row's ``top_k`` columns; see :meth:`AutoencoderDetector.explain`."""
    from models.preprocessing import normalise_frame

    layout = detector.layout_
    names = [str(c) for c in detector.feature_names_in_]
    top = detector.column_scorer_.first_columns(contributions, top_k)
    expected = reconstruction(detector, features)
    inputs = features.double().cpu().numpy()
    observed = normalise_frame(frame, detector.numeric_columns_, detector.categorical_columns_)
    value_position = {column: j for j, column in enumerate(layout.value_columns)}
    block_of = {column: b for b, (_, _, column) in enumerate(layout.categorical_blocks)}
    first = layout.categorical_blocks[0][0] if layout.categorical_blocks else layout.n_features
    n_binary = len(layout.binary_values)
    records = []
    for row in range(top.shape[0]):
        for rank, column in enumerate(top[row], start=1):
            name = names[column]
            seen = observed.iloc[row, column]
            if column in value_position:
                j = value_position[column]
                deviation = inputs[row, j] - expected.scaled_values[row, j]
                direction = (
                    "above" if deviation > 0 else "below" if deviation < 0 else "as expected"
                )
                wanted = float(expected.values[row, j])
                seen = float(seen) if pd.notna(seen) else None
            else:
                block = block_of[column]
                start, stop, _ = layout.categorical_blocks[block]
                levels = layout.levels[block]
                probabilities = expected.probabilities[row, start - first : stop - first]
                wanted = levels[int(np.argmax(probabilities))]
                present = inputs[row, start:stop]
                observed_level = levels[int(np.argmax(present))] if present.max() > 0.5 else None
                if block < n_binary:
                    low, high = layout.binary_values[block]
                    seen = float(seen) if pd.notna(seen) else None
                    wanted = (
                        high if wanted == f"{high:g}" else low if wanted == f"{low:g}" else None
                    )
                    if seen is None or wanted is None or seen == wanted:
                        direction = "as expected" if seen == wanted else "unexpected level"
                    else:
                        direction = "above" if seen > wanted else "below"
                else:
                    direction = "as expected" if observed_level == wanted else "unexpected level"
            records.append(
                {
                    "row": index[row],
                    "rank": rank,
                    "column": name,
                    "contribution": float(contributions[row, column]),
                    "direction": direction,
                    "observed": seen,
                    "expected": wanted,
                }
            )
    columns = ["row", "rank", "column", "contribution", "direction", "observed", "expected"]
    return pd.DataFrame.from_records(records, columns=columns)
