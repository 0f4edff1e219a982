"""Training: choose the window, load it, fit the detector, register the bundle.

Plain functions do the work (tests call them directly); the @task wrappers at the bottom only add
Prefect settings. Tasks exchange batch paths and JSON records, never frames or models.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from models import AutoencoderDetector
from models.registry import ModelRegistry
from tasks.frames import feature_frame, null_missing_tokens
from tasks.io import StorageOptions, read_table

ProgressCallback = Callable[[int, int, float, float], None]

# The CLI installs a progress bar here before it runs a flow in-process; Prefect flow parameters must
# be JSON, so a callback cannot travel as one.
_progress_hooks: list[ProgressCallback] = []


def add_progress_hook(hook: ProgressCallback) -> None:
    """Call ``hook(epoch, n_epochs, train_loss, val_loss)`` after every training epoch."""
    _progress_hooks.append(hook)


def remove_progress_hook(hook: ProgressCallback) -> None:
    if hook in _progress_hooks:
        _progress_hooks.remove(hook)


def _report_progress(epoch: int, n_epochs: int, train_loss: float, val_loss: float) -> None:
    for hook in list(_progress_hooks):
        hook(epoch, n_epochs, train_loss, val_loss)


def select_training_batches(
    batches: Sequence[dict[str, Any]],
    window: int,
    until: str | None = None,
    explicit: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The batches a model trains on.

    ``explicit`` batch ids win (all must exist). Otherwise the last ``window`` batches by id, counting
    only ids ``<= until`` when given: batch ids sort by time (the demo and `aeflow ingest` name them
    ``YYYY-MM-DD...``).
    """
    by_id = {b["batch_id"]: b for b in batches}
    if explicit:
        unknown = sorted(set(explicit) - set(by_id))
        if unknown:
            raise ValueError(
                f"training batches {unknown} are not in incoming/; available: {sorted(by_id)}"
            )
        return [by_id[i] for i in sorted(explicit)]
    eligible = [
        b
        for b in sorted(batches, key=lambda b: b["batch_id"])
        if until is None or b["batch_id"] <= until
    ]
    return eligible[-window:]


def label_vector(
    column: pa.ChunkedArray | pa.Array,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
) -> np.ndarray:
    """0/1 anomaly labels (n,) int8 from a label column.

    Numeric and boolean labels are used as they are (non-zero = anomaly). Text labels need either the
    values meaning anomaly (``positive``) or those meaning normal (``negative``).
    """
    if (
        pa.types.is_boolean(column.type)
        or pa.types.is_integer(column.type)
        or pa.types.is_floating(column.type)
    ):
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return (np.nan_to_num(values, nan=0.0) != 0).astype(np.int8)
    text = pd.Series(
        column.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object
    ).str.strip()
    if positive:
        return text.isin(list(positive)).to_numpy().astype(np.int8)
    if negative:
        return (~text.isin(list(negative))).to_numpy().astype(np.int8)
    raise ValueError(
        f"label column has text values (e.g. {text.dropna().unique()[:3].tolist()}); set "
        "columns.label_positive or columns.label_negative in the config to say which mean anomaly"
    )


def load_training_data(
    batch_paths: Sequence[str],
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str] = (),
    label_column: str | None = None,
    label_positive: Sequence[str] = (),
    label_negative: Sequence[str] = (),
    exclude_labelled_anomalies: bool = False,
    max_rows: int = 500_000,
    seed: int = 0,
    options: StorageOptions = None,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Features (n_rows, n_features) and labels (n_rows,) or None, from the given batches.

    Rows are concatenated in batch order; when there are more than ``max_rows`` a seeded uniform
    sample keeps the frame (and training time) bounded.
    """
    if not batch_paths:
        raise ValueError(
            "no accepted batches to train on; check incoming/ and the validation reports"
        )
    columns = [*numeric, *categorical, *([label_column] if label_column else [])]
    tables = [read_table(path, options, columns=columns) for path in batch_paths]
    table = pa.concat_tables(
        [null_missing_tokens(t, missing_tokens) for t in tables], promote_options="permissive"
    )
    labels = (
        label_vector(table.column(label_column), label_positive, label_negative)
        if label_column
        else None
    )
    keep = np.ones(table.num_rows, dtype=bool)
    if labels is not None and exclude_labelled_anomalies:
        keep &= labels == 0
    if keep.sum() > max_rows:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(np.flatnonzero(keep), size=max_rows, replace=False)
        keep = np.zeros_like(keep)
        keep[chosen] = True
    if not keep.all():
        table = table.filter(pa.array(keep))
        labels = labels[keep] if labels is not None else None
    return feature_frame(table, numeric, categorical), labels


def fit_and_register(
    features: pd.DataFrame,
    labels: np.ndarray | None,
    detector_params: dict[str, Any],
    models_root: str,
    training_batches: Sequence[str],
    options: StorageOptions = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Fit an AutoencoderDetector, save it and register it; returns the registry entry."""
    started = time.perf_counter()
    detector = AutoencoderDetector(**detector_params).fit(features, progress=progress)
    fit_seconds = time.perf_counter() - started
    metrics: dict[str, Any] = {
        "train_rows": int(len(features)),
        "fit_seconds": round(fit_seconds, 3),
        "threshold": float(detector.threshold_),
    }
    if labels is not None and 0 < labels.sum() < len(labels):
        from sklearn.metrics import average_precision_score, roc_auc_score

        scores = detector.decision_function(features)
        metrics["train_auroc"] = float(roc_auc_score(labels, scores))
        metrics["train_auprc"] = float(average_precision_score(labels, scores))
        metrics["train_label_share"] = float(labels.mean())
    with tempfile.TemporaryDirectory(prefix="aeflow-bundle-") as bundle:
        detector.save(bundle)
        registry = ModelRegistry(models_root, options)
        version = registry.register(
            bundle,
            {
                "training_batches": list(training_batches),
                "metrics": metrics,
                "params": detector_params,
            },
        )
    return {"version": version, "metrics": metrics}


@task(name="train-model", cache_policy=NO_CACHE)
def train_model_task(
    batch_paths: list[str],
    training_batches: list[str],
    numeric: list[str],
    categorical: list[str],
    missing_tokens: list[str],
    label_column: str | None,
    label_positive: list[str],
    label_negative: list[str],
    exclude_labelled_anomalies: bool,
    max_rows: int,
    seed: int,
    detector_params: dict[str, Any],
    models_root: str,
    options: StorageOptions = None,
) -> dict[str, Any]:
    features, labels = load_training_data(
        batch_paths,
        numeric,
        categorical,
        missing_tokens,
        label_column,
        label_positive,
        label_negative,
        exclude_labelled_anomalies,
        max_rows,
        seed,
        options,
    )
    return fit_and_register(
        features, labels, detector_params, models_root, training_batches, options, _report_progress
    )


@task(name="promote-model", cache_policy=NO_CACHE)
def promote_task(
    models_root: str, version: str, reason: str, options: StorageOptions = None
) -> dict[str, Any]:
    return ModelRegistry(models_root, options).promote(version, reason)
