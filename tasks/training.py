"""Training: choose the window, split off a holdout, fit the detector, register the bundle.

Plain functions do the work (tests call them directly); the tasks are the same functions with
Prefect settings. Tasks exchange batch references and typed records (tasks.records), never frames
or models.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from models import AutoencoderDetector
from models.trainer import ProgressCallback
from tasks.batch_dates import batch_dates, date_in_id
from tasks.frames import feature_frame, null_missing_tokens
from tasks.incoming import BatchRef
from tasks.io import (
    Storage,
    StorageOptions,
    read_schema,
    read_table,
    remove,
    write_parquet_atomic,
)
from tasks.records import ModelReference, TrainingSplit
from tasks.settings import (
    ColumnsSettings,
    EvaluationSettings,
    ThresholdSettings,
    TrainingSettings,
)
from tasks.window import date_window

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
    batches: Sequence[BatchRef],
    window: int,
    until: str | None = None,
    explicit: Sequence[str] | None = None,
    dates: Mapping[str, str | None] | None = None,
) -> list[BatchRef]:
    """The batches a model trains on.

    ``explicit`` batch ids win (all must exist). Otherwise the batches dated within the last
    ``window`` days up to ``until`` (YYYY-MM-DD; default: the newest batch's date). ``dates`` maps
    batch ids to their dates (:func:`tasks.batch_dates.batch_dates`: timestamp, id or arrival);
    without it, the date written in each id. Undated batches are left out.
    """
    by_id = {b.batch_id: b for b in batches}
    if explicit:
        unknown = sorted(set(explicit) - set(by_id))
        if unknown:
            raise ValueError(
                f"training batches {unknown} are not in incoming/; available: {sorted(by_id)}"
            )
        return [by_id[i] for i in sorted(explicit)]
    if dates is None:
        dates = {b.batch_id: _id_date(b.batch_id) for b in batches}
    return date_window(batches, dates, window, until)


def _id_date(batch_id: str) -> str | None:
    found = date_in_id(batch_id)
    return found.isoformat() if found else None


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


def fit_row_mask(
    n_rows: int,
    labels: np.ndarray | None,
    exclude_labelled_anomalies: bool,
    max_rows: int,
    seed: int,
) -> np.ndarray:
    """(n_rows,) bool: the rows a model is fitted on.

    Rows labelled anomalous are left out when ``exclude_labelled_anomalies``; when more than
    ``max_rows`` remain, a seeded uniform sample keeps the frame (and training time) bounded.
    """
    keep = np.ones(n_rows, dtype=bool)
    if labels is not None and exclude_labelled_anomalies:
        keep &= labels == 0
    if keep.sum() > max_rows:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(np.flatnonzero(keep), size=max_rows, replace=False)
        keep = np.zeros_like(keep)
        keep[chosen] = True
    return keep


# ------------------------------------------------------------------------- train/holdout split
def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def split_training_window(
    *,
    batch_paths: Sequence[str],
    columns: ColumnsSettings,
    evaluation: EvaluationSettings,
    seed: int,
    run: str,
    storage: Storage,
) -> TrainingSplit:
    """Split the accepted training window into training and holdout rows, written as Parquet in
    run ``run``'s report folder (:meth:`tasks.io.Storage.training_rows`, ``holdout_rows``).

    The holdout is the latest ``evaluation.holdout_fraction`` of the rows by ``columns.timestamp``
    (what a model meets after training), or a seeded random share when there is no timestamp
    column. Holdout rows beyond ``evaluation.holdout_max_rows`` are dropped by a seeded sample. Both files keep the id and timestamp
    columns, the features (missing tokens already null) and the label as int8 0/1 under its own
    name, so the challenger and the champion are later evaluated on exactly the same rows.

    Labels are optional in every batch: the label is used only when every batch of the window has
    its column (the split's ``label_column`` is None otherwise, and ``label_note`` says why).
    """
    id_column, timestamp_column, options = columns.id, columns.timestamp, storage.options
    holdout_fraction, holdout_max_rows = evaluation.holdout_fraction, evaluation.holdout_max_rows
    if not batch_paths:
        raise ValueError(
            "no accepted batches to train on; check incoming/ and the validation reports"
        )
    if not 0 < holdout_fraction < 1:
        raise ValueError(
            f"holdout_fraction must be in (0, 1), got {holdout_fraction}; e.g. 0.2 holds out 20%"
        )
    label_column, label_note = _usable_label(batch_paths, columns.label, options)
    roles = [c for c in (id_column, timestamp_column, label_column) if c]
    read = list(dict.fromkeys([*roles, *columns.numeric, *columns.categorical]))
    tables = [read_table(path, options, columns=read) for path in batch_paths]
    table = pa.concat_tables(
        [null_missing_tokens(t, columns.missing_values) for t in tables],
        promote_options="permissive",
    )
    if label_column:
        labels = label_vector(
            table.column(label_column), columns.label_positive, columns.label_negative
        )
        index = table.schema.get_field_index(label_column)
        table = table.set_column(index, label_column, pa.array(labels, type=pa.int8()))
    n_rows = table.num_rows
    n_holdout = round(holdout_fraction * n_rows)
    if n_holdout < 1 or n_rows - n_holdout < 2:
        raise ValueError(
            f"the training window has {n_rows} rows: too few for a holdout of "
            f"{holdout_fraction:.0%} and at least 2 training rows; train on more batches "
            "(training.window_days) or change evaluation.holdout_fraction"
        )
    if timestamp_column:
        # A stable sort keeps batch order among equal times; rows without a time count as oldest.
        order = pc.sort_indices(
            table, sort_keys=[(timestamp_column, "ascending", "at_start")]
        ).to_numpy()
        method = "time"
    else:
        order = np.random.default_rng(seed).permutation(n_rows)
        method = "random"
    holdout_rows = np.sort(order[n_rows - n_holdout :])
    train_rows = np.sort(order[: n_rows - n_holdout])
    if holdout_rows.size > holdout_max_rows:
        sampled = np.random.default_rng(seed).choice(holdout_rows, holdout_max_rows, replace=False)
        holdout_rows = np.sort(sampled)
    train, holdout = table.take(pa.array(train_rows)), table.take(pa.array(holdout_rows))
    if timestamp_column:
        holdout = holdout.take(
            pc.sort_indices(holdout, sort_keys=[(timestamp_column, "ascending")])
        )
    train_path, holdout_path = storage.training_rows(run), storage.holdout_rows(run)
    write_parquet_atomic(train, train_path, options=options)
    write_parquet_atomic(holdout, holdout_path, options=options)

    def time_range(part: pa.Table) -> tuple[str | None, str | None]:
        if not timestamp_column or part.num_rows == 0:
            return None, None
        bounds = pc.min_max(part.column(timestamp_column)).as_py()
        return _iso(bounds["min"]), _iso(bounds["max"])

    train_start, train_end = time_range(train)
    holdout_start, holdout_end = time_range(holdout)
    return TrainingSplit(
        method=method,
        train_path=train_path,
        holdout_path=holdout_path,
        train_rows=int(train.num_rows),
        holdout_rows=int(holdout.num_rows),
        holdout_fraction=float(holdout_fraction),
        seed=int(seed),
        timestamp_column=timestamp_column,
        label_column=label_column,
        label_note=label_note,
        train_start=train_start,
        train_end=train_end,
        holdout_start=holdout_start,
        holdout_end=holdout_end,
    )


def _usable_label(
    batch_paths: Sequence[str], label_column: str | None, options: StorageOptions
) -> tuple[str | None, str | None]:
    """(the label column when every batch has it, else None; a note when some or all lack it)."""
    if not label_column:
        return None, None
    present = sum(label_column in read_schema(path, options).names for path in batch_paths)
    if present == len(batch_paths):
        return label_column, None
    if present == 0:
        note = (
            f"no batch of the window has the label column {label_column!r}: evaluated without "
            "labels (reconstruction and score distribution only)"
        )
    else:
        note = (
            f"the label column {label_column!r} is in {present} of {len(batch_paths)} batches of "
            "the window: evaluated without labels (they are used only when every batch has them)"
        )
    return None, note


def discard_training_split(split: TrainingSplit, options: StorageOptions = None) -> None:
    """Remove a split's training rows once the model is fitted and evaluated.

    They are a copy of the training batches (named in the registry entry) and the split is
    deterministic, so they can be rebuilt; the holdout file stays as the record of the rows the
    challenger and the champion were compared on (it is capped by ``holdout_max_rows``, the training
    part is not, and a nightly retrain would otherwise keep a copy of every window).
    """
    remove(split.train_path, options)


def load_split(
    path: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    label_column: str | None = None,
    options: StorageOptions = None,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Features (n_rows, n_features) and 0/1 labels (n_rows,) int8 or None from a split file
    written by :func:`split_training_window`."""
    columns = [*numeric, *categorical, *([label_column] if label_column else [])]
    table = read_table(path, options, columns=columns)
    labels = (
        table.column(label_column).to_numpy().astype(np.int8, copy=False) if label_column else None
    )
    return feature_frame(table, numeric, categorical), labels


def fit_detector(
    features: pd.DataFrame,
    labels: np.ndarray | None,
    *,
    detector_params: dict[str, Any],
    progress: ProgressCallback | None = None,
) -> tuple[AutoencoderDetector, dict[str, Any]]:
    """Fit an AutoencoderDetector; returns it and the fit's numbers (train_rows, fit_seconds,
    threshold, calibration, and with labels train_auroc / train_auprc / train_label_share)."""
    started = time.perf_counter()
    detector = AutoencoderDetector(**detector_params).fit(features, progress=progress)
    fit_seconds = time.perf_counter() - started
    metrics: dict[str, Any] = {
        "train_rows": int(len(features)),
        "fit_seconds": round(fit_seconds, 3),
        "threshold": float(detector.threshold_),
        "calibration": detector.metadata_.get("calibration"),
    }
    if labels is not None and 0 < labels.sum() < len(labels):
        from sklearn.metrics import average_precision_score, roc_auc_score

        scores = detector.decision_function(features)
        metrics["train_auroc"] = float(roc_auc_score(labels, scores))
        metrics["train_auprc"] = float(average_precision_score(labels, scores))
        metrics["train_label_share"] = float(labels.mean())
    return detector, metrics


def register_detector(
    detector: AutoencoderDetector,
    metrics: dict[str, Any],
    *,
    detector_params: dict[str, Any],
    training_batches: Sequence[str],
    storage: Storage,
) -> ModelReference:
    """Save a fitted detector and register it in the storage's registry; the model reference is
    ``reused`` when an identical model was registered already (its version is returned and nothing
    new is registered)."""
    with tempfile.TemporaryDirectory(prefix="aeflow-bundle-") as bundle:
        detector.save(bundle)
        registry = storage.registry()
        # The same data, config and seed give the same model: reuse its version rather than
        # registering a copy (re-running the demo or a retrain would pile them up).
        identical = registry.find_identical(bundle)
        if identical is not None:
            return ModelReference(version=identical, reused=True, metrics=metrics)
        version = registry.register(
            bundle,
            {
                "training_batches": list(training_batches),
                "metrics": metrics,
                "params": detector_params,
            },
        )
    return ModelReference(version=version, reused=False, metrics=metrics)


def fit_from_split(
    *,
    split: TrainingSplit,
    training_batches: Sequence[str],
    columns: ColumnsSettings,
    training: TrainingSettings,
    detector_params: dict[str, Any],
    storage: Storage,
    threshold: ThresholdSettings | None = None,
) -> ModelReference:
    """Fit and register a detector on the training rows of a split (at most
    ``training.max_rows``, labelled anomalies left out with
    ``training.exclude_labelled_anomalies``), reporting each epoch to the progress hooks; with a
    label threshold method (``threshold``), the threshold is then chosen from labels
    (:mod:`tasks.label_threshold`). See :func:`fit_detector` and :func:`register_detector`."""
    features, labels = load_split(
        split.train_path, columns.numeric, columns.categorical, split.label_column, storage.options
    )
    keep = fit_row_mask(
        len(features),
        labels,
        training.exclude_labelled_anomalies,
        training.max_rows,
        training.seed,
    )
    fit_features, fit_labels = features, labels
    if not keep.all():
        fit_features = features.loc[keep].reset_index(drop=True)
        fit_labels = labels[keep] if labels is not None else None
    detector, metrics = fit_detector(
        fit_features, fit_labels, detector_params=detector_params, progress=_report_progress
    )
    if threshold is not None and threshold.uses_labels:
        from tasks.label_threshold import FitRows, threshold_from_labels

        metrics["calibration"] = threshold_from_labels(
            detector,
            FitRows(features=features, labels=labels, keep=keep, seed=training.seed),
            threshold=threshold,
            columns=columns,
            storage=storage,
        )
        metrics["threshold"] = float(detector.threshold_)
    return register_detector(
        detector,
        metrics,
        detector_params=detector_params,
        training_batches=training_batches,
        storage=storage,
    )


@task(name="select-training-batches", cache_policy=NO_CACHE)
def select_training_batches_task(
    batches: list[BatchRef],
    *,
    storage: Storage,
    columns: ColumnsSettings,
    training: TrainingSettings,
    until: str | None = None,
    explicit: list[str] | None = None,
) -> list[BatchRef]:
    """:func:`select_training_batches`: ``explicit`` (else ``training.batches``) or the batches
    dated (``columns.batch_date``) in the last ``training.window_days`` days up to ``until``."""
    explicit = explicit or training.batches
    dates = None if explicit else batch_dates(batches, storage=storage, columns=columns)
    return select_training_batches(batches, training.window_days, until, explicit, dates)


split_training_window_task = task(
    split_training_window, name="split-training-window", cache_policy=NO_CACHE
)
discard_training_split_task = task(
    discard_training_split, name="discard-training-split", cache_policy=NO_CACHE
)


fit_model_task = task(fit_from_split, name="train-model", cache_policy=NO_CACHE)
