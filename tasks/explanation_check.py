"""Do explanations point at the cause? Plant single-column anomalies and check ``top_features``.

Each sampled row gets exactly one column changed (the protocol of issue 14):

- a numeric column: its value moved by 8 robust standard deviations of the column's training values
  (interquartile range / 1.349, or the standard deviation when the range is 0), up or down at
  random;
- a categorical column: its level replaced by the column's rarest training level (the second
  rarest when the row already has the rarest). Only columns whose rarest level is rare
  (at most :data:`RARE_LEVEL_SHARE` of the training rows) are planted: replacing a level by one a
  quarter of the rows have does not make an anomaly, so no detector could be asked to find it.

The check is the share of planted rows whose first ``top_features`` column is the planted one
(and the share where it is among the first three), and for numeric plantings the share whose
``explain(details=True)`` direction matches the move (``"above"`` for up, ``"below"`` for down).

The same shares are reported over the rows that were *typical before the planting*
(:func:`typical_rows`, no model involved): every numeric value inside the central
``1 - 2 * TYPICAL_TAIL`` of its training values and every level held by at least
``RARE_LEVEL_SHARE`` of the training rows. Only there is the planted column the row's one unusual
value; a row that was already unusual (a test set that drifted from training, a rare level of its
own) carries two anomalies, and which one an explanation should name first is not defined.
Used by the evaluation report (:func:`explanation_check`) and ``benchmarks/explanations.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

ROBUST_SHIFT = 8.0
RARE_LEVEL_SHARE = 0.02
# A typical row's numeric values lie between the training values' TYPICAL_TAIL and
# 1 - TYPICAL_TAIL quantiles.
TYPICAL_TAIL = 0.005
NORMAL_IQR = 1.3489795003921634


@dataclass(frozen=True)
class Planting:
    """Rows with one planted anomaly each.

    Attributes:
        rows: the planted copies (n, columns as the source).
        column: (n,) the planted column's name per row.
        kind: (n,) ``"numeric"`` or ``"categorical"``.
        direction: (n,) ``"above"`` / ``"below"`` for numeric plantings, ``"unexpected level"``
            for categorical ones.
        typical: (n,) bool, the row was typical before the planting (:func:`typical_rows`).
    """

    rows: pd.DataFrame
    column: np.ndarray
    kind: np.ndarray
    direction: np.ndarray
    typical: np.ndarray


def robust_std(values: np.ndarray) -> float:
    """IQR / 1.349 of the finite ``values``, else their standard deviation, else 0."""
    values = values[np.isfinite(values)]
    if not values.size:
        return 0.0
    q75, q25 = np.percentile(values, [75, 25])
    return float((q75 - q25) / NORMAL_IQR) if q75 > q25 else float(values.std())


def plantable_columns(
    train: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> list[str]:
    """Columns a planting can use: numeric ones that vary, categorical ones with a rare level."""
    usable = []
    for name in numeric:
        if robust_std(pd.to_numeric(train[name], errors="coerce").to_numpy(float)) > 0:
            usable.append(name)
    for name in categorical:
        shares = train[name].dropna().astype(str).value_counts(normalize=True)
        if len(shares) >= 2 and shares.iloc[-1] <= RARE_LEVEL_SHARE:
            usable.append(name)
    return usable


def typical_rows(
    train: pd.DataFrame, rows: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> np.ndarray:
    """(n,) bool: each row of ``rows`` has every numeric value between the training values'
    ``TYPICAL_TAIL`` and ``1 - TYPICAL_TAIL`` quantiles (a missing value counts as typical when at
    least ``RARE_LEVEL_SHARE`` of the training values are missing) and every categorical level held
    by at least ``RARE_LEVEL_SHARE`` of the training rows."""
    typical = np.ones(len(rows), dtype=bool)
    for name in numeric:
        values = pd.to_numeric(train[name], errors="coerce")
        low, high = values.quantile(TYPICAL_TAIL), values.quantile(1 - TYPICAL_TAIL)
        current = pd.to_numeric(rows[name], errors="coerce")
        missing_is_common = values.isna().mean() >= RARE_LEVEL_SHARE
        inside = current.between(low, high) | (current.isna() & missing_is_common)
        typical &= inside.to_numpy(dtype=bool)
    for name in categorical:
        shares = train[name].astype(str).value_counts(normalize=True)
        held = rows[name].astype(str).map(shares).fillna(0.0).to_numpy(dtype=float)
        typical &= held >= RARE_LEVEL_SHARE
    return typical


def plant(
    train: pd.DataFrame,
    rows: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    seed: int = 0,
    max_rows: int = 1000,
) -> Planting:
    """Plant one anomaly in each of at most ``max_rows`` rows sampled from ``rows`` (seeded)."""
    usable = plantable_columns(train, numeric, categorical)
    if not usable or not len(rows):
        raise ValueError(
            "no column can hold a planted anomaly (numeric columns are constant and no "
            "categorical column has a rare level) or there are no rows to plant into"
        )
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(rows), size=min(max_rows, len(rows)), replace=False))
    planted = rows.iloc[picked].reset_index(drop=True).copy()
    typical = typical_rows(train, planted, numeric, categorical)
    column = rng.choice(np.asarray(usable, dtype=object), size=len(planted))
    sign = rng.choice([-1.0, 1.0], size=len(planted))
    direction = np.where(sign > 0, "above", "below").astype(object)
    kind = np.where(np.isin(column, list(numeric)), "numeric", "categorical").astype(object)
    for name in usable:
        chosen = column == name
        if not chosen.any():
            continue
        if name in numeric:
            values = pd.to_numeric(train[name], errors="coerce").to_numpy(float)
            current = pd.to_numeric(planted[name], errors="coerce").astype(float)
            planted[name] = current
            shift = sign[chosen] * ROBUST_SHIFT * robust_std(values)
            base = current[chosen].fillna(float(np.nanmedian(values)))
            planted.loc[chosen, name] = base.to_numpy() + shift
        else:
            counts = train[name].dropna().astype(str).value_counts()
            rarest, second = counts.index[-1], counts.index[-2]
            planted[name] = planted[name].astype(object)
            current = planted.loc[chosen, name].astype(str)
            planted.loc[chosen, name] = np.where(current == rarest, second, rarest)
            direction[chosen] = "unexpected level"
    return Planting(planted, column, kind, direction, typical)


def check(detector: Any, planting: Planting, top_k: int = 3) -> dict[str, Any]:
    """Score the planted rows; returns ``{"rows", "top1", "top3", "direction", "by_kind":
    {kind: {"rows", "top1"}}, "by_column": {column: {"rows", "top1"}}, "typical": {"rows",
    "top1", "top3", "by_kind"}}`` (shares in [0, 1], None over no rows; ``direction`` over
    numeric plantings; ``typical`` over the rows typical before the planting)."""
    details = detector.explain(planting.rows, top_k=top_k, details=True)
    ranked = details.pivot(index="row", columns="rank", values="column").sort_index()
    first = ranked[1].to_numpy(dtype=object)
    top = ranked.to_numpy(dtype=object)
    hit1 = first == planting.column
    hit3 = (top == planting.column[:, None]).any(axis=1)
    match = details.set_index(["row", "column"])["direction"]
    numeric = planting.kind == "numeric"
    direction_ok = [
        match.get((row, planting.column[row])) == planting.direction[row]
        for row in np.flatnonzero(numeric)
    ]

    def share(mask: np.ndarray) -> float | None:
        return float(mask.mean()) if mask.size else None

    typical = planting.typical

    return {
        "rows": int(len(hit1)),
        "top1": share(hit1),
        "top3": share(hit3),
        "direction": share(np.asarray(direction_ok, dtype=bool)),
        "by_kind": {
            kind: {
                "rows": int((planting.kind == kind).sum()),
                "top1": share(hit1[planting.kind == kind]),
            }
            for kind in ("numeric", "categorical")
            if (planting.kind == kind).any()
        },
        "by_column": {
            str(name): {
                "rows": int((planting.column == name).sum()),
                "top1": share(hit1[planting.column == name]),
            }
            for name in sorted(set(planting.column))
        },
        "typical": {
            "rows": int(typical.sum()),
            "top1": share(hit1[typical]),
            "top3": share(hit3[typical]),
            "by_kind": {
                kind: share(hit1[typical & (planting.kind == kind)])
                for kind in ("numeric", "categorical")
                if (typical & (planting.kind == kind)).any()
            },
        },
    }


def explanation_check(
    detector: Any,
    train_frame: pd.DataFrame,
    holdout_frame: pd.DataFrame,
    holdout_labels: np.ndarray | None,
    seed: int = 0,
    max_rows: int = 1000,
) -> dict[str, Any] | None:
    """The evaluation report's check: plant into holdout rows not labelled anomalous; None when
    no column can hold a planting."""
    rows = holdout_frame if holdout_labels is None else holdout_frame.loc[holdout_labels == 0]
    numeric, categorical = list(detector.numeric_columns_), list(detector.categorical_columns_)
    if not plantable_columns(train_frame, numeric, categorical) or not len(rows):
        return None
    planting = plant(train_frame, rows, numeric, categorical, seed, max_rows)
    return {
        "shift_robust_std": ROBUST_SHIFT,
        "rare_level_share": RARE_LEVEL_SHARE,
        **check(detector, planting),
    }
