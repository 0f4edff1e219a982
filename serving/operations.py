"""The five online operations on one served model: score, encode, explain, reconstruct, decode.

Each takes the request's checked record batch (:meth:`serving.rules.InputContract.check`) and
returns an Arrow table: the passthrough columns the request sent (id, timestamp), the operation's
columns, then ``model_version``. Scoring and encoding run :func:`tasks.row_scoring.score_rows`,
the function batch scoring runs on every chunk (:func:`tasks.scored_output.score_chunk`), so a row gets
the same bits online and in a batch; explain uses the same feature frame and forward pass
(``detector.score``) for its contributions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from models.explanations import ScoreResult
from models.reconstruction import decode as decode_rows
from models.reconstruction import reconstruct
from tasks.frames import feature_frame
from tasks.row_scoring import score_rows
from tasks.scored_output import SCORE_COLUMNS, latent_arrays, score_arrays

if TYPE_CHECKING:
    from serving.model_holder import ServedModel

OPERATIONS = ("score", "encode", "explain", "reconstruct", "decode")


def _passthrough(served: ServedModel, batch: pa.RecordBatch) -> list[str]:
    return [rule.name for rule in served.contract.passthrough if rule.name in batch.schema.names]


def _with_version(
    served: ServedModel, batch: pa.RecordBatch, columns: dict[str, pa.Array]
) -> pa.Table:
    """Passthrough columns of ``batch``, then ``columns``, then ``model_version``."""
    names = _passthrough(served, batch)
    arrays = [batch.column(name) for name in names]
    names += list(columns)
    arrays += list(columns.values())
    names.append("model_version")
    arrays.append(pa.array([served.version] * batch.num_rows, type=pa.string()))
    return pa.Table.from_arrays(arrays, names=names)


def _scored(served: ServedModel, batch: pa.RecordBatch, top_k: int) -> ScoreResult:
    """``batch`` scored by :func:`tasks.row_scoring.score_rows`, what batch scoring runs on each
    chunk (the same preprocessing replay and forward pass)."""
    contract = served.contract
    return score_rows(
        batch,
        served.detector,
        contract.numeric,
        contract.categorical,
        contract.missing_tokens,
        top_k,
    )


def score(served: ServedModel, batch: pa.RecordBatch, top_k: int) -> pa.Table:
    """Passthrough, anomaly_score, anomaly_percentile, is_anomaly, threshold, top_features,
    model_version: the scored file's values for these rows (the arrays
    :func:`tasks.scored_output.score_chunk` writes)."""
    arrays = score_arrays(_scored(served, batch, top_k), served.detector.threshold_)
    return _with_version(served, batch, dict(zip(SCORE_COLUMNS, arrays, strict=True)))


def encode(served: ServedModel, batch: pa.RecordBatch, top_k: int) -> pa.Table:
    """Passthrough, z_0..z_{k-1} (float32), model_version: the scored file's encoded features."""
    arrays = latent_arrays(_scored(served, batch, top_k).latent)
    return _with_version(served, batch, {f"z_{i}": a for i, a in enumerate(arrays)})


def _features(served: ServedModel, batch: pa.RecordBatch) -> pd.DataFrame:
    contract = served.contract
    return feature_frame(batch, contract.numeric, contract.categorical, contract.missing_tokens)


def _expected_arrays(served: ServedModel, expected: pd.DataFrame) -> dict[str, pa.Array]:
    """Expected values per feature column: float64 for numeric, text (null: missing) else."""
    numeric = set(served.contract.numeric)
    return {
        name: (
            pa.array(pd.to_numeric(expected[name]).to_numpy(np.float64), type=pa.float64())
            if name in numeric
            else pa.array(expected[name].to_numpy(dtype=object), type=pa.string())
        )
        for name in expected.columns
    }


def explain(served: ServedModel, batch: pa.RecordBatch, top_k: int) -> pa.Table:
    """Passthrough, anomaly_score, anomaly_percentile, is_anomaly, threshold, top_features, then
    three objects keyed by feature column: ``contributions`` (float32, summing to the score),
    ``directions`` (above / below / unexpected level / as expected: ``explain(details=True)``'s)
    and ``expected`` (the value the model expected, in the column's units or levels), and
    model_version."""
    detector = served.detector
    features = _features(served, batch)
    result = detector.score(features, top_k=top_k)
    names = [str(name) for name in detector.feature_names_in_]
    details = detector.explain(features, top_k=len(names), details=True)
    n = batch.num_rows
    wide = {
        field: details.pivot(index="row", columns="column", values=field).reindex(
            index=features.index, columns=names
        )
        for field in ("direction", "expected")
    }
    columns = {
        "anomaly_score": pa.array(result.scores, type=pa.float64()),
        "anomaly_percentile": pa.array(result.percentiles, type=pa.float64()),
        "is_anomaly": pa.array(result.is_anomaly, type=pa.bool_()),
        "threshold": pa.array(np.full(n, float(detector.threshold_)), type=pa.float64()),
        "top_features": pa.array(result.top_features, type=pa.string()),
        "contributions": pa.StructArray.from_arrays(
            [
                pa.array(np.asarray(result.contributions[:, j], np.float32))
                for j in range(len(names))
            ],
            names=names,
        ),
        "directions": pa.StructArray.from_arrays(
            [pa.array(wide["direction"][name].tolist(), pa.string()) for name in names],
            names=names,
        ),
        "expected": pa.StructArray.from_arrays(
            list(_expected_arrays(served, wide["expected"]).values()), names=names
        ),
    }
    return _with_version(served, batch, columns)


def reconstruct_rows(served: ServedModel, batch: pa.RecordBatch, top_k: int) -> pa.Table:
    """Passthrough, each feature column as the model reconstructs it (encode, then decode),
    model_version."""
    expected = reconstruct(served.detector, _features(served, batch))
    return _with_version(served, batch, _expected_arrays(served, expected))


def decode(served: ServedModel, batch: pa.RecordBatch, top_k: int) -> pa.Table:
    """z_0..z_{k-1} rows -> passthrough, each feature column of the decoded row, model_version."""
    latent = [rule.name for rule in served.contract.latent]
    codes = np.column_stack(
        [batch.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False) for name in latent]
    ).reshape(batch.num_rows, len(latent))
    expected = decode_rows(served.detector, codes.astype(np.float32))
    return _with_version(served, batch, _expected_arrays(served, expected))


HANDLERS = {
    "score": score,
    "encode": encode,
    "explain": explain,
    "reconstruct": reconstruct_rows,
    "decode": decode,
}
