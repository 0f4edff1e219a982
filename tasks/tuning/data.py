"""The rows a search scores trials on: the training part of the train flow's own split, split again.

The search makes exactly the split the train flow makes (same window, holdout share and seed), so
its holdout is the one the gate will compare on later. That holdout file is removed unread at once;
the search only reads the training part, which it splits into fit rows and validation rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tasks.io import Storage, StorageOptions, read_table, remove, write_parquet_atomic
from tasks.training import fit_row_mask, label_vector, split_training_window
from tasks.tuning.records import SearchData
from tasks.tuning.settings import TuningSettings

SEARCH_LABEL = "_aeflow_search_label"  # the 0/1 label the objective needs, in the search files
FIT_FILE, VALIDATION_FILE = "search-fit.parquet", "search-validation.parquet"


def resolve_objective(
    requested: str, labels: np.ndarray | None, tuning: TuningSettings
) -> tuple[str, str]:
    """(objective, why) for ``requested`` ("auto" or a name) given the window's anomaly labels."""
    labelled = labels is not None and 0 < int(labels.sum()) < len(labels)
    if requested == "auto":
        if tuning.downstream_label:
            return "downstream", f"tuning.downstream_label names {tuning.downstream_label!r}"
        if labelled:
            return "auprc", "the training window has labels with both values"
        why = (
            "the training window has no label column"
            if labels is None
            else "its labels hold one value only"
        )
        return "reconstruction", f"{why}: the unsupervised objective is used"
    if requested == "auprc" and not labelled:
        raise ValueError(
            "objective 'auprc' needs a label column with anomalies and normal rows in every batch "
            "of the training window (columns.label); use --objective reconstruction without labels"
        )
    if requested == "downstream" and not tuning.downstream_label:
        raise ValueError(
            "objective 'downstream' needs tuning.downstream_label: the column the encoded features "
            "should predict"
        )
    return requested, f"asked for {requested!r}"


def _downstream_labels(
    batch_paths: Sequence[str],
    ids: pa.ChunkedArray,
    id_column: str,
    tuning: TuningSettings,
    options: StorageOptions,
) -> np.ndarray:
    """0/1 downstream labels for the rows with ``ids`` (the training part's rows, by id)."""
    column = tuning.downstream_label
    parts = [read_table(path, options, columns=[id_column, column]) for path in batch_paths]
    table = pa.concat_tables(parts, promote_options="permissive")
    values = label_vector(table.column(column), tuning.downstream_positive)
    by_id = dict(zip(table.column(id_column).to_pylist(), values.tolist(), strict=True))
    missing = [i for i in ids.to_pylist()[:5] if i not in by_id]
    if missing:
        raise ValueError(f"tuning.downstream_label: rows {missing} have no {column!r} value")
    return np.asarray([by_id[i] for i in ids.to_pylist()], dtype=np.int8)


def _stratified_split(
    n_rows: int, strata: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(fit row indices, validation row indices), seeded; each stratum split in proportion."""
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n_rows)]
        if strata is None
        else [np.flatnonzero(strata == v) for v in np.unique(strata)]
    )
    fit, validation = [], []
    for rows in groups:
        rows = rng.permutation(rows)
        n_val = max(1, round(fraction * len(rows))) if len(rows) > 1 else 0
        validation.append(rows[:n_val])
        fit.append(rows[n_val:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(validation))


def prepare_search_data(
    batch_paths: Sequence[str],
    *,
    config: Any,
    tuning: TuningSettings,
    objective: str,
    storage: Storage,
) -> SearchData:
    """Split the window as the train flow does, drop its holdout unread, and write the search's fit
    and validation rows in the study's folder (``tuning.study``: :meth:`tasks.io.Storage.tuning`).

    ``config`` is the pipeline config (its columns, evaluation and training sections are read).
    """
    cols, evaluation, training = config.columns, config.evaluation, config.training
    options = storage.options
    seed = tuning.search_seed(training.seed)
    split = split_training_window(
        batch_paths=batch_paths,
        columns=cols,
        evaluation=evaluation,
        seed=training.seed,
        run=storage.tuning_split_run(tuning.study),
        storage=storage,
    )
    remove(split.holdout_path, options)  # the gate's rows: never read by the search
    label_column = split.label_column
    wanted = [cols.id, *cols.numeric, *cols.categorical, *([label_column] if label_column else [])]
    table = read_table(split.train_path, options, columns=list(dict.fromkeys(wanted)))
    remove(split.train_path, options)
    if table.num_rows > tuning.max_rows:
        keep = np.sort(
            np.random.default_rng(seed).choice(table.num_rows, tuning.max_rows, replace=False)
        )
        table = table.take(pa.array(keep))
    labels = table.column(label_column).to_numpy().astype(np.int8) if label_column else None
    chosen, why = resolve_objective(objective, labels, tuning)
    notes = [f"objective {chosen}: {why}"] + ([split.label_note] if split.label_note else [])
    target = None
    if chosen == "auprc":
        target = labels
    elif chosen == "downstream":
        target = _downstream_labels(batch_paths, table.column(cols.id), cols.id, tuning, options)
    fit_rows, validation_rows = _stratified_split(
        table.num_rows, target, tuning.validation_fraction, seed
    )
    if labels is not None and training.exclude_labelled_anomalies:
        fit_rows = fit_rows[
            fit_row_mask(len(fit_rows), labels[fit_rows], True, len(fit_rows), seed)
        ]
        notes.append(
            "rows labelled anomalous are left out of the fit rows (training.exclude_labelled_anomalies)"
        )
    if target is not None:
        table = table.append_column(SEARCH_LABEL, pa.array(target, type=pa.int8()))
    fit_path = storage.tuning_file(tuning.study, FIT_FILE)
    validation_path = storage.tuning_file(tuning.study, VALIDATION_FILE)
    write_parquet_atomic(table.take(pa.array(fit_rows)), fit_path, options=options)
    write_parquet_atomic(table.take(pa.array(validation_rows)), validation_path, options=options)
    return SearchData(
        fit_path=fit_path,
        validation_path=validation_path,
        numeric=list(cols.numeric),
        categorical=list(cols.categorical),
        label=SEARCH_LABEL if target is not None else None,
        downstream=tuning.downstream_label if chosen == "downstream" else None,
        objective=chosen,
        fit_rows=len(fit_rows),
        validation_rows=len(validation_rows),
        holdout_rows=int(split.holdout_rows),
        notes=notes,
        options=dict(options or {}),
    )
