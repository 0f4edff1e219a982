"""Population stability index (PSI) and the bins it is measured over: one rule for every PSI in
aeflow (nightly drift against the champion's training data, train-vs-holdout shift in the
evaluation).

PSI = ``sum((a - e) * ln(a / e))`` over bins with shares ``e`` (reference) and ``a`` (compared),
each share floored at ``epsilon`` so empty bins stay finite. Rule of thumb: below 0.1 stable,
0.1-0.25 shifting, above 0.25 drifted.

- numeric columns: quantile bins of the reference (interior edges at observed values, so a discrete
  column gets fewer, well-filled bins) plus a missing bin;
- categorical columns: the most frequent reference levels (ties by name), an 'other' bin for the
  rest (and for levels never seen), plus a missing bin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

MISSING_BIN = "(missing)"
OTHER_BIN = "(other)"


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = 1e-4) -> float:
    """Population stability index between two share vectors over the same bins.

    Args:
        expected: (n_bins,) reference shares (or counts), non-negative.
        actual: (n_bins,) batch shares (or counts) over the same bins.
        epsilon: floor of every share before the log, so an empty bin costs a finite amount.

    Returns:
        PSI >= 0; 0 when the distributions are equal.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1 or e.size == 0:
        raise ValueError(
            f"expected and actual must be share vectors over the same bins, got shapes "
            f"{e.shape} and {a.shape}"
        )
    if (e < 0).any() or (a < 0).any() or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("shares must be non-negative and not all zero")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
    e = np.maximum(e / e.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def psi_status(value: float | None, warn: float, retrain: float) -> str:
    """'ok', 'warn' (>= warn) or 'drift' (>= retrain); 'ok' when there is no value."""
    if value is None:
        return "ok"
    if value >= retrain:
        return "drift"
    return "warn" if value >= warn else "ok"


# ------------------------------------------------------------------------------------ bins
def numeric_bin_edges(values: np.ndarray, n_bins: int) -> list[float]:
    """Interior quantile edges of ``values`` (n,) for ``n_bins`` bins, NaN ignored.

    Equal quantiles (a column with few distinct values) collapse into one edge, so a discrete column
    gets fewer, well-filled bins. An all-missing column has no edges (one bin plus missing).
    """
    present = np.asarray(values, dtype=np.float64)
    present = present[~np.isnan(present)]
    if present.size == 0:
        return []
    # Edges are observed values ("higher"), so a discrete column gets edges at its own values.
    edges = np.quantile(present, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], method="higher")
    return [float(edge) for edge in np.unique(edges)]


def numeric_bin_labels(edges: Sequence[float]) -> list[str]:
    """Readable names of the bins of :func:`numeric_bin_counts` (the last one is missing)."""
    bounds = ["-inf", *(f"{edge:.6g}" for edge in edges), "inf"]
    return [f"[{lo}, {hi})" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)] + [MISSING_BIN]


def numeric_bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts (len(edges) + 2,) int64: bins ``[edge_i, edge_i+1)`` then the missing (NaN) bin."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values[~missing], side="right")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.int64)
    return np.append(counts, np.int64(missing.sum()))


def categorical_levels(values: np.ndarray, max_levels: int) -> list[str]:
    """The ``max_levels`` most frequent non-missing levels of ``values`` (n,); ties by name."""
    counts = pd.Series(values, dtype=object).dropna().astype(str).value_counts()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [level for level, _ in ranked[:max_levels]]


def categorical_bin_labels(levels: Sequence[str]) -> list[str]:
    return [*levels, OTHER_BIN, MISSING_BIN]


def categorical_bin_counts(values: np.ndarray, levels: Sequence[str]) -> np.ndarray:
    """Counts (len(levels) + 2,) int64: each level, then 'other' (any other level), then missing."""
    series = pd.Series(values, dtype=object)
    missing = series.isna().to_numpy()
    index = pd.Categorical(series, categories=list(levels)).codes.astype(np.int64)
    index = np.where(index < 0, len(levels), index)  # unknown levels go to 'other'
    counts = np.bincount(index[~missing], minlength=len(levels) + 1).astype(np.int64)
    return np.append(counts, np.int64(missing.sum()))


def bin_shares(counts: np.ndarray) -> list[float]:
    """Counts -> shares summing to 1 (all zero when there is no count)."""
    total = counts.sum()
    return [float(c) / total for c in counts] if total else [0.0] * len(counts)
