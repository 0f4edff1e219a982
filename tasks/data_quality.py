"""Data-quality checks of a training window: train-vs-holdout shift (PSI per column), possible
label leakage (a feature that alone separates the label) and class balance, each finding with a
readable warning (see docs/evaluation.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tasks.holdout_metrics import json_number
from tasks.psi import (
    EPSILON,
    MAX_LEVELS,
    NUMERIC_BINS,
    categorical_bin_counts,
    categorical_levels,
    numeric_bin_counts,
    numeric_bin_edges,
    psi,
)

# PSI convention: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a significant one.
PSI_SIGNIFICANT = 0.25
# Fewer labelled anomalies than this in the holdout make AUROC/AUPRC too noisy to lean on.
MIN_HOLDOUT_POSITIVES = 10


def population_stability_index(
    reference: pd.Series, current: pd.Series, kind: str, bins: int = NUMERIC_BINS
) -> float:
    """PSI of ``current`` against ``reference`` with aeflow's one PSI rule (:mod:`tasks.psi`, the
    rule nightly drift uses): numeric columns in the reference's quantile bins (edges at observed
    values), categorical columns in its :data:`tasks.psi.MAX_LEVELS` most frequent levels plus an
    "other" bin; missing values are a bin of their own; shares floored at
    :data:`tasks.psi.EPSILON`."""
    if kind == "numeric":
        ref = pd.to_numeric(reference, errors="coerce").to_numpy(dtype=np.float64)
        cur = pd.to_numeric(current, errors="coerce").to_numpy(dtype=np.float64)
        edges = numeric_bin_edges(ref, bins)
        expected, actual = numeric_bin_counts(ref, edges), numeric_bin_counts(cur, edges)
    else:
        ref = reference.astype(object).where(reference.notna(), None).to_numpy(dtype=object)
        cur = current.astype(object).where(current.notna(), None).to_numpy(dtype=object)
        ref_text = np.array([v if v is None else str(v) for v in ref], dtype=object)
        cur_text = np.array([v if v is None else str(v) for v in cur], dtype=object)
        levels = categorical_levels(ref_text, MAX_LEVELS)
        expected = categorical_bin_counts(ref_text, levels)
        actual = categorical_bin_counts(cur_text, levels)
    return psi(expected, actual, EPSILON)


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
                "psi": json_number(
                    population_stability_index(train_frame[name], holdout_frame[name], kind)
                ),
                "null_share_train": json_number(train_frame[name].isna().mean()),
                "null_share_holdout": json_number(holdout_frame[name].isna().mean()),
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
        rows.append({"column": name, "kind": "numeric", "auroc": json_number(auroc), "rows": "all"})
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
                "auroc": json_number(auroc),
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
            "share": json_number(positives / len(labels)) if len(labels) else None,
        }

    return {"train": part(train_labels), "holdout": part(holdout_labels)}


# A categorical column with at least this many levels, and at least this share of its rows
# distinct, is id-like: its levels fall in the rare group, so it tells the model next to nothing.
ID_LIKE_LEVELS = 50
ID_LIKE_SHARE = 0.5


def uninformative_columns(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> list[str]:
    """One phrase per feature column of ``frame`` (the training rows) that cannot inform the
    model: no value at all, one value on every row (one value and nulls is a presence flag, which
    informs), or (categorical) id-like."""
    found = []
    for name in [*numeric, *categorical]:
        values = frame[name].dropna()
        if name in numeric:
            values = values[np.isfinite(values.to_numpy(dtype=float))]
        distinct = values.unique()
        if len(values) == 0:
            found.append(f"{name!r} has no value")
        elif len(distinct) == 1 and len(values) == len(frame):  # with nulls: a presence flag
            value = distinct[0].item() if isinstance(distinct[0], np.generic) else distinct[0]
            found.append(f"{name!r} is constant ({value!r})")
        elif name in categorical and len(distinct) >= max(
            ID_LIKE_LEVELS, ID_LIKE_SHARE * len(values)
        ):
            found.append(f"{name!r} has {len(distinct)} distinct values in {len(values)} rows")
    return found


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
    useless = uninformative_columns(train_frame, numeric, categorical)
    if useless:
        warnings.append(
            f"uninformative columns in the training rows: {', '.join(useless)}; they cannot "
            "inform the model and only add noise to its scores and top_features: leave them out "
            "of columns.numeric / columns.categorical (or bucket an id-like column)"
        )
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
