"""Drift measures: PSI, reference bins, per-batch reports and retraining triggers."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.drift import (
    build_reference_profile,
    champion_challenged_at,
    compare_to_reference,
    measure_batch_drift,
    read_reference_frame,
    retrain_triggers,
)
from tasks.io import Storage
from tasks.psi import (
    MISSING_BIN,
    OTHER_BIN,
    categorical_bin_counts,
    categorical_bin_labels,
    categorical_levels,
    numeric_bin_counts,
    numeric_bin_edges,
    numeric_bin_labels,
    psi,
)
from tasks.records import DriftReport, ScoreMarker
from tasks.run_reports import drift_markdown
from tasks.settings import ColumnsSettings, DriftSettings, RetrainingSettings

DRIFT = DriftSettings()


def triggers(reports, since, now, on_drift=True, max_model_age_days=30):
    """:func:`retrain_triggers` with these retraining settings, as a dict."""
    retraining = RetrainingSettings(on_drift=on_drift, max_model_age_days=max_model_age_days)
    drift_reports = [report_of(r) for r in reports]
    return retrain_triggers(drift_reports, since, now, retraining).to_dict()


def report_of(fields: dict) -> DriftReport:
    """A drift report with ``fields`` (the rest empty)."""
    empty = {
        "dataset": "demo", "reference_version": "v1", "status": "ok", "rows": 0,
        "rows_scored": 0, "drifted_columns": [], "warned_columns": [], "columns": [],
        "score": {}, "flag_rate": {}, "thresholds": {}, "report": "",
    }  # fmt: skip
    return DriftReport.from_dict({**empty, **fields})


LEVELS = np.array(["pos", "online", "atm", "contactless"])
LEVEL_P = np.array([0.5, 0.3, 0.1, 0.1])


def make_frame(rng: np.random.Generator, n: int, amount_scale: float = 1.0, online_p=None):
    p = LEVEL_P if online_p is None else online_p
    amount = rng.lognormal(3.0, 0.6, n) * amount_scale
    amount[rng.random(n) < 0.02] = np.nan
    channel = rng.choice(LEVELS, n, p=p).astype(object)
    channel[rng.random(n) < 0.01] = None
    return pd.DataFrame(
        {"amount": amount, "age": rng.integers(18, 90, n).astype(np.float64), "channel": channel}
    )


def reference(rng: np.random.Generator, n: int = 20_000):
    frame = make_frame(rng, n)
    scores = rng.gamma(2.0, 1.0, n)
    threshold = float(np.quantile(scores, 0.99))
    return build_reference_profile(frame, ["amount", "age"], ["channel"], scores, threshold)


def counts_of(profile, frame, scores, threshold):
    columns = {
        c: numeric_bin_counts(frame[c].to_numpy(dtype=float), profile["numeric"][c]["edges"])
        for c in profile["numeric"]
    }
    columns.update(
        {
            c: categorical_bin_counts(
                frame[c].to_numpy(dtype=object), profile["categorical"][c]["levels"]
            )
            for c in profile["categorical"]
        }
    )
    return {
        "columns": columns,
        "score": numeric_bin_counts(scores, profile["score"]["edges"]),
        "rows": len(frame),
        "flagged": int((scores > threshold).sum()),
    }


# ------------------------------------------------------------------------------------ PSI
def test_psi_is_zero_for_equal_distributions_and_matches_the_formula():
    assert psi([0.2, 0.3, 0.5], [2, 3, 5]) == pytest.approx(0.0, abs=1e-12)
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected, rel=1e-6)


def test_psi_stays_finite_when_a_bin_is_empty_and_grows_as_epsilon_shrinks():
    coarse = psi([0.5, 0.5], [1.0, 0.0], epsilon=1e-2)
    fine = psi([0.5, 0.5], [1.0, 0.0], epsilon=1e-6)
    assert math.isfinite(coarse) and math.isfinite(fine) and fine > coarse > 0


def test_psi_rejects_share_vectors_over_different_bins():
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="epsilon must be in"):
        psi([0.5, 0.5], [0.5, 0.5], epsilon=0)


# ----------------------------------------------------------------------------------- bins
def test_numeric_bins_are_reference_deciles_plus_a_missing_bin():
    values = np.arange(1000, dtype=float)
    edges = numeric_bin_edges(values, 10)
    assert len(edges) == 9
    counts = numeric_bin_counts(np.append(values, [np.nan, np.nan]), edges)
    assert counts.tolist() == [100] * 10 + [2]


def test_a_discrete_column_gets_fewer_bins_and_an_empty_column_none():
    values = np.array([0.0] * 700 + [1.0] * 200 + [5.0] * 100)
    edges = numeric_bin_edges(values, 10)
    assert edges == [0.0, 1.0, 5.0]
    assert numeric_bin_counts(values, edges).tolist() == [0, 700, 200, 100, 0]
    assert numeric_bin_edges(np.array([np.nan, np.nan]), 10) == []


def test_categorical_bins_keep_top_levels_and_send_the_rest_to_other():
    values = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] + [None], dtype=object)
    levels = categorical_levels(values, max_levels=2)
    assert levels == ["a", "b"]  # b before c: equal counts are ordered by name
    batch = np.array(["a", "c", "never-seen", None, None], dtype=object)
    assert categorical_bin_counts(batch, levels).tolist() == [1, 0, 2, 2]


# ------------------------------------------------------------------------ batch reports
def test_a_sample_of_the_reference_distribution_does_not_drift():
    rng = np.random.default_rng(0)
    profile = reference(rng)
    frame = make_frame(rng, 5000)
    scores = rng.gamma(2.0, 1.0, 5000)
    report = compare_to_reference(
        profile, counts_of(profile, frame, scores, profile["threshold"]), DRIFT
    )
    assert report["status"] == "ok" and not report["drifted"] and report["reasons"] == []
    assert all(c["psi"] < 0.02 for c in report["columns"])
    assert report["flag_rate"]["judged"] and report["flag_rate"]["status"] == "ok"


def test_a_shifted_column_and_a_shifted_level_mix_are_named_as_drifted():
    rng = np.random.default_rng(1)
    profile = reference(rng)
    frame = make_frame(rng, 5000, amount_scale=1.8, online_p=np.array([0.2, 0.6, 0.1, 0.1]))
    scores = rng.gamma(2.0, 1.0, 5000)
    report = compare_to_reference(
        profile, counts_of(profile, frame, scores, profile["threshold"]), DRIFT
    )
    assert report["drifted"] and report["status"] == "drift"
    assert set(report["drifted_columns"]) == {"amount", "channel"}
    by_column = {c["column"]: c for c in report["columns"]}
    assert by_column["age"]["status"] == "ok"
    assert by_column["channel"]["largest_shift"]["bin"] in ("online", "pos")
    assert report["columns"][0]["psi"] >= report["columns"][-1]["psi"]  # worst first
    assert "2 column(s) with PSI >= 0.25" in report["reasons"][0]
    # min_drifted_columns above the count: the columns alone no longer make the batch drifted
    calm = compare_to_reference(
        profile,
        counts_of(profile, frame, scores, profile["threshold"]),
        DriftSettings(min_drifted_columns=3),
    )
    assert not calm["drifted"] and calm["status"] == "warn"


def test_score_distribution_and_flag_rate_drift_are_reported():
    rng = np.random.default_rng(2)
    profile = reference(rng)
    frame = make_frame(rng, 5000)
    scores = rng.gamma(2.0, 1.0, 5000) * 1.6  # the model finds everything more unusual
    report = compare_to_reference(
        profile, counts_of(profile, frame, scores, profile["threshold"]), DRIFT
    )
    assert report["score"]["status"] == "drift"
    assert report["flag_rate"]["status"] == "drift" and report["flag_rate"]["ratio"] > 3
    assert report["drifted_columns"] == []
    assert any("anomaly score PSI" in r for r in report["reasons"])
    assert any("flag rate" in r for r in report["reasons"])


def test_the_flag_rate_of_a_small_batch_is_not_judged():
    rng = np.random.default_rng(3)
    profile = reference(rng)
    frame = make_frame(rng, 300)
    scores = np.full(300, 100.0)  # every row flagged, but 300 rows expect only 3 flags
    report = compare_to_reference(
        profile, counts_of(profile, frame, scores, profile["threshold"]), DRIFT
    )
    assert report["flag_rate"]["judged"] is False and report["flag_rate"]["status"] == "ok"
    assert report["flag_rate"]["batch"] == 1.0


def test_measure_batch_drift_streams_parquet_files_and_stores_the_report(tmp_path: Path):
    rng = np.random.default_rng(4)
    profile = {**reference(rng), "model_version": "v1"}
    frame = make_frame(rng, 3000, amount_scale=2.0)
    frame["channel"] = frame["channel"].astype(object)
    batch = tmp_path / "incoming" / "2026-01-08.parquet"
    batch.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), batch, row_group_size=1000)
    scores = rng.gamma(2.0, 1.0, 3000)
    scored = tmp_path / "scored.parquet"
    pq.write_table(
        pa.table({"anomaly_score": scores, "is_anomaly": scores > profile["threshold"]}), scored
    )
    layout = Storage(str(tmp_path), "demo")
    marker = ScoreMarker(
        batch_id="2026-01-08", status="scored", rows_in=3000, rows_out=3000, flagged=0,
        model_version="v1", input_path=str(batch), output=str(scored),
    )  # fmt: skip
    report = measure_batch_drift(
        marker=marker,
        profile=profile,
        storage=layout,
        columns=ColumnsSettings(id="id", numeric=["amount", "age"], categorical=["channel"]),
        drift=DRIFT,
        chunk_rows=1024,
    )
    stored = json.loads(Path(layout.reports("drift"), "2026-01-08.json").read_text())
    assert stored == report.to_dict()
    assert report.rows == report.rows_scored == 3000
    assert report.drifted_columns == ["amount"] and report.reference_version == "v1"
    markdown = drift_markdown("demo", [report])
    assert "| 2026-01-08 | **drift** | amount |" in markdown
    assert "| channel |" in markdown and "| age |" in markdown


def test_bin_labels_name_the_ranges_the_other_and_the_missing_bins():
    assert numeric_bin_labels([1.0, 2.5]) == [
        "[-inf, 1)",
        "[1, 2.5)",
        "[2.5, inf)",
        MISSING_BIN,
    ]
    assert categorical_bin_labels(["a"]) == ["a", OTHER_BIN, MISSING_BIN]


def test_drift_markdown_says_when_nothing_was_measured():
    assert "No batch was scored tonight" in drift_markdown("demo", [])


# ------------------------------------------------------------------------------ triggers
NOW = dt.datetime(2026, 2, 1, 2, 0, tzinfo=dt.UTC)


def test_a_drifted_batch_triggers_retraining_with_its_reasons():
    reports = [
        {"batch_id": "2026-01-30", "drifted": False, "reasons": []},
        {"batch_id": "2026-01-31", "drifted": True, "reasons": ["1 column(s) with PSI >= 0.25"]},
    ]
    decision = triggers(reports, "2026-01-30T00:00:00+00:00", NOW)
    assert decision["retrain"] and decision["triggers"] == ["drift"]
    assert decision["reasons"] == ["drift in 2026-01-31: 1 column(s) with PSI >= 0.25"]
    assert decision["model_age_days"] == pytest.approx(2.083, abs=1e-3)
    assert not triggers(reports, "2026-01-30T00:00:00+00:00", NOW, on_drift=False)["retrain"]


def test_an_old_champion_triggers_retraining_and_a_young_one_does_not():
    old = triggers([], "2025-12-01T00:00:00+00:00", NOW, max_model_age_days=30)
    assert old["retrain"] and old["triggers"] == ["model_age"]
    assert "unchallenged for 62.1 days (limit 30 days)" in old["reasons"][0]
    young = triggers([], "2026-01-25T00:00:00", NOW, max_model_age_days=30)
    assert not young["retrain"] and young["reasons"] == []
    never = triggers([], "2020-01-01T00:00:00+00:00", NOW, max_model_age_days=None)
    assert not never["retrain"]


def test_a_refused_challenger_restarts_the_champions_age():
    entry = {"version": "v1", "registered_at": "2025-11-01T00:00:00+00:00"}
    history = [
        {"action": "promote", "version": "v1", "previous": None, "at": "2025-11-01T00:05:00+00:00"},
        {"action": "refuse", "version": "v2", "previous": "v1", "at": "2026-01-20T00:00:00+00:00"},
        {"action": "refuse", "version": "x", "previous": "v0", "at": "2026-01-30T00:00:00+00:00"},
    ]
    since = champion_challenged_at({"version": "v1", "history": history}, entry)
    assert since == "2026-01-20T00:00:00+00:00"  # v2 lost to v1; the refusal of x was not v1's
    assert not triggers([], since, NOW, max_model_age_days=30)["retrain"]
    alone = champion_challenged_at({"version": "v1", "history": history[:1]}, entry)
    assert alone == entry["registered_at"]
    assert triggers([], alone, NOW, max_model_age_days=30)["triggers"] == ["model_age"]


def test_the_reference_sample_is_capped_seeded_and_complete_when_small(tmp_path: Path):
    rng = np.random.default_rng(5)
    paths = []
    for day in range(3):
        frame = make_frame(rng, 2000)
        path = tmp_path / f"2026-01-0{day + 1}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=500)
        paths.append(str(path))
    args = (paths, ColumnsSettings(id="id", numeric=["amount", "age"], categorical=["channel"]))
    everything = read_reference_frame(*args, max_rows=10_000)
    assert len(everything) == 6000
    assert everything["age"].tolist()[:5] == pq.read_table(paths[0])["age"].to_pylist()[:5]
    sample = read_reference_frame(*args, max_rows=1500, seed=3)
    assert len(sample) == 1500 and list(sample.columns) == ["amount", "age", "channel"]
    assert sample.equals(read_reference_frame(*args, max_rows=1500, seed=3))
    assert not sample.equals(read_reference_frame(*args, max_rows=1500, seed=4))
