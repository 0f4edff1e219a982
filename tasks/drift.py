"""Drift monitoring: each night's batches against the champion's training data.

The reference is a compact profile of the rows the champion was trained on, stored with the model
(``<root>/models/<dataset>/<version>/drift_reference.json``, written once, the first time it is
needed):

- numeric columns: 10 quantile bins (interior edges from the reference rows) plus a missing bin;
- categorical columns: the most frequent reference levels, an 'other' bin for the rest (and for
  levels never seen), plus a missing bin;
- the champion's anomaly scores on those rows (quantile bins) and the share it flags.

A batch's drift is the population stability index (PSI) of each distribution against the
reference, ``sum((a - e) * ln(a / e))`` over bins with shares ``e`` (reference) and ``a`` (batch),
each share floored at ``epsilon`` so empty bins stay finite. Rule of thumb: below 0.1 stable,
0.1-0.25 shifting, above 0.25 drifted. The flag rate is compared as a ratio to the reference's.

Plain functions do the work; the @task wrappers at the bottom only add Prefect settings. Batches are
streamed in record batches, so memory stays flat whatever their size.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models.registry import ModelRegistry
from tasks.frames import feature_frame
from tasks.io import (
    StorageLayout,
    StorageOptions,
    count_rows,
    iter_record_batches,
    join,
    list_batches,
    read_json,
    write_json_atomic,
)
from tasks.markdown import md_code, md_text
from tasks.reporting import artifact_key

PROFILE_FILE = "drift_reference.json"
PROFILE_FORMAT = 1
MISSING_BIN = "(missing)"
OTHER_BIN = "(other)"
# Below this many flagged rows expected at the reference rate, a batch's flag rate is too noisy to
# judge (a Poisson count of 20 stays within a factor of 3 with probability > 0.999).
MIN_EXPECTED_FLAGGED = 20
STATUS_ORDER = ("ok", "warn", "drift")


# ------------------------------------------------------------------------------------- PSI
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


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return [float(c) / total for c in counts] if total else [0.0] * len(counts)


# ------------------------------------------------------------------------------- reference
def build_reference_profile(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    scores: np.ndarray,
    threshold: float,
    n_bins: int = 10,
    max_levels: int = 50,
) -> dict[str, Any]:
    """The drift reference of a model from its training rows.

    Args:
        frame: (n_rows, n_features) the reference rows (numeric float64 with NaN, categorical
            strings/None), as :func:`tasks.frames.feature_frame` returns them.
        numeric, categorical: the feature columns to profile.
        scores: (n_rows,) the model's anomaly scores of those rows.
        threshold: the model's flag threshold (rows scoring above it are flagged).
        n_bins: quantile bins per numeric column and for the scores.
        max_levels: levels kept per categorical column.

    Returns:
        A JSON-able profile: ``numeric`` {column: {edges, shares}}, ``categorical``
        {column: {levels, shares}}, ``score`` {edges, shares}, ``flag_rate``, ``rows``.
    """
    if len(frame) == 0:
        raise ValueError(
            "the drift reference needs at least one row; the training batches are empty"
        )
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(frame),):
        raise ValueError(
            f"scores must have one value per reference row ({len(frame)}), got shape {scores.shape}"
        )
    profile: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "rows": int(len(frame)),
        "numeric_bins": int(n_bins),
        "max_levels": int(max_levels),
        "numeric": {},
        "categorical": {},
    }
    for column in numeric:
        values = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
        edges = numeric_bin_edges(values, n_bins)
        profile["numeric"][column] = {
            "edges": edges,
            "shares": _shares(numeric_bin_counts(values, edges)),
        }
    for column in categorical:
        values = frame[column].to_numpy(dtype=object)
        levels = categorical_levels(values, max_levels)
        profile["categorical"][column] = {
            "levels": levels,
            "shares": _shares(categorical_bin_counts(values, levels)),
        }
    score_edges = numeric_bin_edges(scores, n_bins)
    profile["score"] = {
        "edges": score_edges,
        "shares": _shares(numeric_bin_counts(scores, score_edges)),
    }
    profile["threshold"] = float(threshold)
    profile["flag_rate"] = float(np.mean(scores > threshold))
    return profile


def profile_url(models_root: str, version: str) -> str:
    """Where a model version's drift reference lives: next to its bundle."""
    return join(models_root, version, PROFILE_FILE)


def read_reference_frame(
    batch_paths: Sequence[str],
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str] = (),
    max_rows: int = 100_000,
    seed: int = 0,
    options: StorageOptions = None,
) -> pd.DataFrame:
    """The feature rows (n <= max_rows, n_features) of the given batches; a seeded uniform sample
    when there are more, drawn while streaming so memory stays bounded by ``max_rows``."""
    total = sum(count_rows(path, options) for path in batch_paths)
    if total == 0:
        raise ValueError(f"no rows in the reference batches {list(batch_paths)}")
    rng = np.random.default_rng(seed)
    # Keep each row with a probability a little above max_rows / total, then trim to max_rows.
    rate = min(1.0, 1.05 * max_rows / total)
    frames = []
    for path in batch_paths:
        for record_batch in iter_record_batches(path, options, columns=[*numeric, *categorical]):
            if rate < 1.0:
                record_batch = record_batch.filter(
                    pa.array(rng.random(record_batch.num_rows) < rate)
                )
            frames.append(feature_frame(record_batch, numeric, categorical, missing_tokens))
    frame = pd.concat(frames, ignore_index=True)
    if len(frame) > max_rows:
        keep = np.sort(rng.choice(len(frame), max_rows, replace=False))
        frame = frame.iloc[keep].reset_index(drop=True)
    return frame


def ensure_reference_profile(
    layout: StorageLayout,
    version: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing_tokens: Sequence[str] = (),
    n_bins: int = 10,
    max_levels: int = 50,
    max_rows: int = 100_000,
    seed: int = 0,
    options: StorageOptions = None,
) -> dict[str, Any]:
    """The drift reference of model ``version``, built and stored the first time it is asked for.

    The reference rows are the batches in the registry entry's ``training_batches`` that are still
    in incoming/ (batches stay there after scoring), scored by the model itself. Raises ValueError
    when none of them is left.
    """
    url = profile_url(layout.models, version)
    stored = read_json(url, options)
    if stored is not None and stored.get("format") == PROFILE_FORMAT:
        return stored
    registry = ModelRegistry(layout.models, options)
    wanted = list(registry.entry(version).get("training_batches", []))
    present = {b.batch_id: b.path for b in list_batches(layout.incoming, options)}
    paths = [present[b] for b in wanted if b in present]
    if not paths:
        raise ValueError(
            f"cannot build the drift reference of model {version}: none of its training batches "
            f"{wanted} is left in {layout.incoming}; put them back or retrain (`aeflow retrain`)"
        )
    frame = read_reference_frame(
        paths, numeric, categorical, missing_tokens, max_rows, seed, options
    )
    detector, _ = registry.load(version)
    profile = build_reference_profile(
        frame,
        numeric,
        categorical,
        detector.decision_function(frame),
        float(detector.threshold_),
        n_bins,
        max_levels,
    )
    profile.update(
        {
            "model_version": version,
            "source_batches": [b for b in wanted if b in present],
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )
    write_json_atomic(profile, url, options)
    return profile


# ------------------------------------------------------------------------------ measuring
def batch_counts(
    profile: Mapping[str, Any],
    batch_path: str,
    scored_path: str,
    missing_tokens: Sequence[str] = (),
    chunk_rows: int = 65_536,
    options: StorageOptions = None,
) -> dict[str, Any]:
    """Bin counts of one batch over the reference's bins, streamed.

    Returns ``{"columns": {column: counts}, "score": counts, "rows": n, "flagged": k}`` where the
    counts are int64 arrays aligned with the profile's bins, ``rows`` counts the batch's rows and
    ``flagged`` the scored rows flagged as anomalies.
    """
    numeric = list(profile["numeric"])
    categorical = list(profile["categorical"])
    columns: dict[str, np.ndarray] = {}
    rows = 0
    for record_batch in iter_record_batches(
        batch_path, options, columns=[*numeric, *categorical], batch_rows=chunk_rows
    ):
        rows += record_batch.num_rows
        frame = feature_frame(record_batch, numeric, categorical, missing_tokens)
        for column in numeric:
            counts = numeric_bin_counts(
                frame[column].to_numpy(dtype=np.float64), profile["numeric"][column]["edges"]
            )
            columns[column] = columns.get(column, 0) + counts
        for column in categorical:
            counts = categorical_bin_counts(
                frame[column].to_numpy(dtype=object), profile["categorical"][column]["levels"]
            )
            columns[column] = columns.get(column, 0) + counts
    score_edges = profile["score"]["edges"]
    score_counts = np.zeros(len(score_edges) + 2, dtype=np.int64)
    flagged = 0
    for record_batch in iter_record_batches(
        scored_path, options, columns=["anomaly_score", "is_anomaly"], batch_rows=chunk_rows
    ):
        scores = record_batch.column(0).cast(pa.float64()).to_numpy(zero_copy_only=False)
        score_counts += numeric_bin_counts(scores, score_edges)
        flagged += int(np.count_nonzero(record_batch.column(1).to_numpy(zero_copy_only=False)))
    return {"columns": columns, "score": score_counts, "rows": rows, "flagged": flagged}


def _largest_shift(labels: Sequence[str], expected: Sequence[float], actual: np.ndarray) -> dict:
    shares = actual / actual.sum()
    index = int(np.argmax(np.abs(shares - np.asarray(expected))))
    return {
        "bin": labels[index],
        "reference_share": round(float(expected[index]), 6),
        "batch_share": round(float(shares[index]), 6),
    }


def compare_to_reference(
    profile: Mapping[str, Any],
    counts: Mapping[str, Any],
    psi_warn: float = 0.1,
    psi_retrain: float = 0.25,
    flag_rate_ratio: float = 3.0,
    min_drifted_columns: int = 1,
    epsilon: float = 1e-4,
) -> dict[str, Any]:
    """The drift report of one batch from its bin counts (see :func:`batch_counts`).

    Each column, the score distribution and the flag rate get a status: 'ok', 'warn' (PSI >=
    psi_warn) or 'drift' (PSI >= psi_retrain; flag rate at least ``flag_rate_ratio`` times the
    reference's or that many times smaller). The batch has drifted when at least
    ``min_drifted_columns`` columns have, or the score distribution or the flag rate has; then
    ``drifted`` is true and ``reasons`` says why.
    """
    column_reports = []
    for kind in ("numeric", "categorical"):
        for column, reference in profile[kind].items():
            observed = np.asarray(counts["columns"].get(column, []), dtype=np.int64)
            labels = (
                numeric_bin_labels(reference["edges"])
                if kind == "numeric"
                else categorical_bin_labels(reference["levels"])
            )
            if observed.sum() == 0:
                column_reports.append(
                    {"column": column, "kind": kind, "psi": None, "status": "ok", "rows": 0}
                )
                continue
            value = psi(reference["shares"], observed, epsilon)
            column_reports.append(
                {
                    "column": column,
                    "kind": kind,
                    "psi": round(value, 6),
                    "status": psi_status(value, psi_warn, psi_retrain),
                    "largest_shift": _largest_shift(labels, reference["shares"], observed),
                }
            )
    column_reports.sort(key=lambda r: -(r["psi"] or 0.0))

    score_counts = np.asarray(counts["score"], dtype=np.int64)
    scored_rows = int(score_counts.sum())
    score_psi = psi(profile["score"]["shares"], score_counts, epsilon) if scored_rows else None
    score_report = {
        "psi": None if score_psi is None else round(score_psi, 6),
        "status": psi_status(score_psi, psi_warn, psi_retrain),
    }
    if scored_rows:
        score_report["largest_shift"] = _largest_shift(
            numeric_bin_labels(profile["score"]["edges"]), profile["score"]["shares"], score_counts
        )

    reference_rate = float(profile["flag_rate"])
    rate = counts["flagged"] / scored_rows if scored_rows else None
    expected_flagged = reference_rate * scored_rows
    if rate is None or expected_flagged < MIN_EXPECTED_FLAGGED:
        ratio, rate_status = None, "ok"
        judged = False
    else:
        ratio = rate / reference_rate
        judged = True
        rate_status = "drift" if ratio >= flag_rate_ratio or ratio <= 1 / flag_rate_ratio else "ok"
    flag_report = {
        "reference": round(reference_rate, 6),
        "batch": None if rate is None else round(rate, 6),
        "ratio": None if ratio is None else round(ratio, 4),
        "judged": judged,
        "status": rate_status,
    }

    drifted_columns = [r["column"] for r in column_reports if r["status"] == "drift"]
    warned_columns = [r["column"] for r in column_reports if r["status"] == "warn"]
    reasons = []
    if len(drifted_columns) >= min_drifted_columns:
        named = ", ".join(
            f"{r['column']} {r['psi']:.3f}" for r in column_reports if r["status"] == "drift"
        )
        reasons.append(f"{len(drifted_columns)} column(s) with PSI >= {psi_retrain}: {named}")
    if score_report["status"] == "drift":
        reasons.append(f"anomaly score PSI {score_psi:.3f} >= {psi_retrain}")
    if rate_status == "drift":
        reasons.append(
            f"flag rate {rate:.2%} is {ratio:.2f}x the reference's {reference_rate:.2%} "
            f"(limit {flag_rate_ratio}x either way)"
        )
    statuses = [r["status"] for r in column_reports] + [score_report["status"], rate_status]
    status = "drift" if reasons else ("warn" if "warn" in statuses or "drift" in statuses else "ok")
    return {
        "status": status,
        "drifted": bool(reasons),
        "reasons": reasons,
        "rows": int(counts["rows"]),
        "rows_scored": scored_rows,
        "drifted_columns": drifted_columns,
        "warned_columns": warned_columns,
        "columns": column_reports,
        "score": score_report,
        "flag_rate": flag_report,
        "thresholds": {
            "psi_warn": psi_warn,
            "psi_retrain": psi_retrain,
            "flag_rate_ratio": flag_rate_ratio,
            "min_drifted_columns": min_drifted_columns,
            "epsilon": epsilon,
        },
    }


def measure_batch_drift(
    layout: StorageLayout,
    profile: Mapping[str, Any],
    batch_id: str,
    batch_path: str,
    scored_path: str,
    missing_tokens: Sequence[str] = (),
    psi_warn: float = 0.1,
    psi_retrain: float = 0.25,
    flag_rate_ratio: float = 3.0,
    min_drifted_columns: int = 1,
    epsilon: float = 1e-4,
    chunk_rows: int = 65_536,
    options: StorageOptions = None,
) -> dict[str, Any]:
    """Measure one scored batch against the reference and store the report as JSON under
    ``<root>/reports/<dataset>/drift/<batch_id>.json`` (replaced when measured again)."""
    counts = batch_counts(profile, batch_path, scored_path, missing_tokens, chunk_rows, options)
    report = compare_to_reference(
        profile, counts, psi_warn, psi_retrain, flag_rate_ratio, min_drifted_columns, epsilon
    )
    url = join(layout.reports("drift"), f"{batch_id}.json")
    report = {
        "batch_id": batch_id,
        "dataset": layout.dataset,
        "reference_version": profile.get("model_version"),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "report": url,
        **report,
    }
    write_json_atomic(report, url, options)
    return report


# ------------------------------------------------------------------------------ triggers
def champion_challenged_at(
    champion_state: Mapping[str, Any], champion_entry: Mapping[str, Any]
) -> str | None:
    """When the champion was last confirmed: its registration, or a later refusal of a challenger
    while it was champion (ISO time). The age trigger counts from here, so a champion that keeps
    winning is challenged once per age limit, not every night."""
    version = champion_entry.get("version")
    times = [champion_entry.get("registered_at")]
    became = None
    for event in champion_state.get("history", []):
        if event.get("action") in ("promote", "rollback") and event.get("version") == version:
            became = event.get("at")
        elif event.get("action") == "refuse" and event.get("previous") == version and became:
            times.append(event.get("at"))
    present = [t for t in times if t]
    return max(present, key=_as_utc) if present else None


def _as_utc(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def retrain_triggers(
    drift_reports: Sequence[Mapping[str, Any]],
    champion_since: str | None,
    now: dt.datetime,
    on_drift: bool = True,
    max_model_age_days: int | None = 30,
) -> dict[str, Any]:
    """Whether tonight's results call for retraining, and why.

    Triggers: a drifted batch (when ``on_drift``), and a champion older than
    ``max_model_age_days`` at ``now``, counted from ``champion_since`` (see
    :func:`champion_challenged_at`). Returns ``{"retrain": bool, "triggers": [...],
    "reasons": [...], "model_age_days": float | None}``.
    """
    triggers, reasons = [], []
    drifted = [r for r in drift_reports if r.get("drifted")]
    if on_drift and drifted:
        triggers.append("drift")
        for report in drifted:
            reasons.append(f"drift in {report['batch_id']}: " + "; ".join(report["reasons"]))
    age_days = None
    if champion_since:
        age_days = (now - _as_utc(champion_since)).total_seconds() / 86_400
        if max_model_age_days is not None and age_days > max_model_age_days:
            triggers.append("model_age")
            reasons.append(
                f"champion unchallenged for {age_days:.1f} days (limit {max_model_age_days} days)"
            )
    return {
        "retrain": bool(triggers),
        "triggers": triggers,
        "reasons": reasons,
        "model_age_days": None if age_days is None else round(age_days, 3),
    }


# ------------------------------------------------------------------------------- reports
def _fmt(value: float | None, digits: int = 3) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def drift_markdown(dataset: str, reports: Sequence[Mapping[str, Any]]) -> str:
    """One night's drift reports as a Markdown artifact: a line per batch, then the top columns."""
    lines = [f"# Drift: {md_text(dataset)}", ""]
    if not reports:
        return "\n".join([*lines, "No batch was scored tonight, so no drift was measured.", ""])
    lines += [
        "| batch | status | drifted columns | score PSI | flag rate (reference) | reasons |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        flag = r["flag_rate"]
        rate = "n/a" if flag["batch"] is None else f"{flag['batch']:.2%}"
        lines.append(
            f"| {md_text(r['batch_id'])} | **{r['status']}** "
            f"| {md_text(', '.join(r['drifted_columns']) or '-')} "
            f"| {_fmt(r['score']['psi'])} | {rate} ({flag['reference']:.2%}) "
            f"| {md_text('; '.join(r['reasons']) or '-')} |"
        )
    for r in reports:
        lines += [
            "",
            f"## {md_text(r['batch_id'])}: column PSI (reference model "
            f"{md_code(r['reference_version'])})",
            "",
            "| column | PSI | status | largest shift (reference -> batch share) |",
            "|---|---|---|---|",
        ]
        for c in r["columns"]:
            shift = c.get("largest_shift")
            moved = (
                f"{md_text(shift['bin'])}: {shift['reference_share']:.1%} -> "
                f"{shift['batch_share']:.1%}"
                if shift
                else "-"
            )
            lines.append(f"| {md_text(c['column'])} | {_fmt(c['psi'])} | {c['status']} | {moved} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- Prefect tasks
@task(name="drift-reference", cache_policy=NO_CACHE)
def ensure_reference_task(
    root: str,
    dataset: str,
    version: str,
    numeric: list[str],
    categorical: list[str],
    missing_tokens: list[str],
    n_bins: int = 10,
    max_levels: int = 50,
    max_rows: int = 100_000,
    seed: int = 0,
    options: StorageOptions = None,
) -> dict[str, Any]:
    return ensure_reference_profile(
        StorageLayout(root, dataset),
        version,
        numeric,
        categorical,
        missing_tokens,
        n_bins,
        max_levels,
        max_rows,
        seed,
        options,
    )


@task(name="measure-drift", cache_policy=NO_CACHE)
def measure_drift_task(
    root: str,
    dataset: str,
    profile: dict[str, Any],
    batch_id: str,
    batch_path: str,
    scored_path: str,
    missing_tokens: list[str],
    psi_warn: float,
    psi_retrain: float,
    flag_rate_ratio: float,
    min_drifted_columns: int,
    epsilon: float,
    chunk_rows: int = 65_536,
    options: StorageOptions = None,
) -> dict[str, Any]:
    return measure_batch_drift(
        StorageLayout(root, dataset),
        profile,
        batch_id,
        batch_path,
        scored_path,
        missing_tokens,
        psi_warn,
        psi_retrain,
        flag_rate_ratio,
        min_drifted_columns,
        epsilon,
        chunk_rows,
        options,
    )


@task(name="drift-report", cache_policy=NO_CACHE)
def drift_artifact_task(dataset: str, reports: list[dict[str, Any]]) -> str:
    """Publish the night's drift reports as one Markdown artifact; returns the artifact's key."""
    key = artifact_key(dataset, "drift")
    create_markdown_artifact(
        markdown=drift_markdown(dataset, reports),
        key=key,
        description=f"aeflow drift against the champion's training data for {dataset}",
    )
    return key
