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

The bins and the PSI are :mod:`tasks.psi`'s. Plain functions do the work; the tasks are the same
functions with Prefect settings. Batches are streamed in record batches, so memory stays flat
whatever their size. The reports are rendered for people in :mod:`tasks.run_reports`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.frames import feature_frame
from tasks.io import (
    Storage,
    StorageOptions,
    count_rows,
    iter_record_batches,
    list_batches,
    read_json,
    write_json_atomic,
)
from tasks.psi import (
    MAX_LEVELS,
    NUMERIC_BINS,
    bin_shares,
    categorical_bin_counts,
    categorical_bin_labels,
    categorical_levels,
    numeric_bin_counts,
    numeric_bin_edges,
    numeric_bin_labels,
    psi,
    psi_status,
)
from tasks.records import DriftReport, FlagPrecision, RetrainDecision, ScoreMarker
from tasks.settings import ColumnsSettings, DriftSettings, RetrainingSettings

PROFILE_FORMAT = 1
# Below this many flagged rows expected at the reference rate, a batch's flag rate is too noisy to
# judge (a Poisson count of 20 stays within a factor of 3 with probability > 0.999).
MIN_EXPECTED_FLAGGED = 20
STATUS_ORDER = ("ok", "warn", "drift")


# ------------------------------------------------------------------------------- reference
def build_reference_profile(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    scores: np.ndarray,
    threshold: float,
    n_bins: int = NUMERIC_BINS,
    max_levels: int = MAX_LEVELS,
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
            "shares": bin_shares(numeric_bin_counts(values, edges)),
        }
    for column in categorical:
        values = frame[column].to_numpy(dtype=object)
        levels = categorical_levels(values, max_levels)
        profile["categorical"][column] = {
            "levels": levels,
            "shares": bin_shares(categorical_bin_counts(values, levels)),
        }
    score_edges = numeric_bin_edges(scores, n_bins)
    profile["score"] = {
        "edges": score_edges,
        "shares": bin_shares(numeric_bin_counts(scores, score_edges)),
    }
    profile["threshold"] = float(threshold)
    profile["flag_rate"] = float(np.mean(scores > threshold))
    return profile


def read_reference_frame(
    batch_paths: Sequence[str],
    columns: ColumnsSettings,
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
    numeric, categorical = columns.numeric, columns.categorical
    frames = []
    for path in batch_paths:
        for record_batch in iter_record_batches(path, options, columns=[*numeric, *categorical]):
            if rate < 1.0:
                record_batch = record_batch.filter(
                    pa.array(rng.random(record_batch.num_rows) < rate)
                )
            frames.append(feature_frame(record_batch, numeric, categorical, columns.missing_values))
    frame = pd.concat(frames, ignore_index=True)
    if len(frame) > max_rows:
        keep = np.sort(rng.choice(len(frame), max_rows, replace=False))
        frame = frame.iloc[keep].reset_index(drop=True)
    return frame


def ensure_reference_profile(
    *,
    storage: Storage,
    version: str,
    columns: ColumnsSettings,
    drift: DriftSettings,
    seed: int = 0,
) -> dict[str, Any]:
    """The drift reference of model ``version``, built and stored the first time it is asked for.

    The reference rows are the batches in the registry entry's ``training_batches`` that are still
    in incoming/ (batches stay there after scoring), scored by the model itself: at most
    ``drift.reference_rows`` of them (a ``seed``-ed sample), in ``drift.numeric_bins`` bins and
    ``drift.max_levels`` levels per column. Raises ValueError when none of them is left.
    """
    options = storage.options
    url = storage.drift_reference(version)
    stored = read_json(url, options)
    if stored is not None and stored.get("format") == PROFILE_FORMAT:
        return stored
    registry = storage.registry()
    wanted = list(registry.entry(version).get("training_batches", []))
    present = {b.batch_id: b.path for b in list_batches(storage.incoming, options)}
    paths = [present[b] for b in wanted if b in present]
    if not paths:
        raise ValueError(
            f"cannot build the drift reference of model {version}: none of its training batches "
            f"{wanted} is left in {storage.incoming}; put them back or retrain (`aeflow retrain`)"
        )
    frame = read_reference_frame(paths, columns, drift.reference_rows, seed, options)
    detector, _ = registry.load(version)
    profile = build_reference_profile(
        frame,
        columns.numeric,
        columns.categorical,
        detector.decision_function(frame),
        float(detector.threshold_),
        drift.numeric_bins,
        drift.max_levels,
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
    profile: Mapping[str, Any], counts: Mapping[str, Any], drift: DriftSettings
) -> dict[str, Any]:
    """The drift report of one batch from its bin counts (see :func:`batch_counts`).

    Each column, the score distribution and the flag rate get a status: 'ok', 'warn' (PSI >=
    ``drift.psi_warn``) or 'drift' (PSI >= ``drift.psi_retrain``; flag rate at least
    ``drift.flag_rate_ratio`` times the reference's or that many times smaller). The batch has
    drifted when at least ``drift.min_drifted_columns`` columns have, or the score distribution or
    the flag rate has; then ``drifted`` is true and ``reasons`` says why.
    """
    psi_warn, psi_retrain, epsilon = drift.psi_warn, drift.psi_retrain, drift.epsilon
    flag_rate_ratio, min_drifted_columns = drift.flag_rate_ratio, drift.min_drifted_columns
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
    *,
    marker: ScoreMarker,
    profile: Mapping[str, Any],
    storage: Storage,
    columns: ColumnsSettings,
    drift: DriftSettings,
    chunk_rows: int = 65_536,
) -> DriftReport:
    """Measure one scored batch (its input and scored file, from its success marker) against the
    reference and store the report as JSON under ``<root>/reports/<dataset>/drift/<batch_id>.json``
    (replaced when measured again)."""
    counts = batch_counts(
        profile,
        marker.input_path,
        marker.output,
        columns.missing_values,
        chunk_rows,
        storage.options,
    )
    report = compare_to_reference(profile, counts, drift)
    url = storage.drift_report(marker.batch_id)
    report = {
        "batch_id": marker.batch_id,
        "dataset": storage.dataset,
        "reference_version": profile.get("model_version"),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "report": url,
        **report,
    }
    write_json_atomic(report, url, storage.options)
    return DriftReport.from_dict(report)


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
    drift_reports: Sequence[DriftReport],
    champion_since: str | None,
    now: dt.datetime,
    retraining: RetrainingSettings,
    flag_precision: FlagPrecision | None = None,
) -> RetrainDecision:
    """Whether tonight's results call for retraining, and why.

    Triggers: a drifted batch (when ``retraining.on_drift``), a champion older than
    ``retraining.max_model_age_days`` at ``now``, counted from ``champion_since`` (see
    :func:`champion_challenged_at`), and the champion's flag precision from analysts' verdicts
    below ``feedback.precision_floor`` (``flag_precision``, see
    :func:`tasks.flag_precision.precision_check`).
    """
    max_model_age_days = retraining.max_model_age_days
    triggers, reasons = [], []
    drifted = [r for r in drift_reports if r.drifted]
    if retraining.on_drift and drifted:
        triggers.append("drift")
        for report in drifted:
            reasons.append(f"drift in {report.batch_id}: " + "; ".join(report.reasons))
    age_days = None
    if champion_since:
        age_days = (now - _as_utc(champion_since)).total_seconds() / 86_400
        if max_model_age_days is not None and age_days > max_model_age_days:
            triggers.append("model_age")
            reasons.append(
                f"champion unchallenged for {age_days:.1f} days (limit {max_model_age_days} days)"
            )
    if flag_precision is not None and flag_precision.below_floor:
        triggers.append("feedback")
        reasons.append(flag_precision.reason)
    return RetrainDecision(
        retrain=bool(triggers),
        triggers=triggers,
        reasons=reasons,
        model_age_days=None if age_days is None else round(age_days, 3),
        flag_precision=flag_precision.to_dict() if flag_precision is not None else None,
    )


# --------------------------------------------------------------------------- Prefect tasks
ensure_reference_task = task(
    ensure_reference_profile, name="drift-reference", cache_policy=NO_CACHE
)
measure_drift_task = task(measure_batch_drift, name="measure-drift", cache_policy=NO_CACHE)


@task(name="retrain-triggers", cache_policy=NO_CACHE)
def retrain_triggers_task(
    drift_reports: list[DriftReport],
    champion_since: str | None,
    retraining: RetrainingSettings,
    flag_precision: FlagPrecision | None = None,
) -> RetrainDecision:
    """:func:`retrain_triggers` now."""
    now = dt.datetime.now(dt.UTC)
    return retrain_triggers(drift_reports, champion_since, now, retraining, flag_precision)
