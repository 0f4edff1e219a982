"""Holdout split and evaluation: real demo Parquet batches, a real (small, quickly trained) model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from challenger_support import demo_fit_params, fit_demo_challenger
from model_support import demo_columns

from models import AutoencoderDetector
from tasks.data_quality import (
    class_balance,
    data_quality,
    leakage_scan,
    population_stability_index,
)
from tasks.demo_data import (
    CATEGORICAL_COLUMNS,
    ID_COLUMN,
    LABEL_COLUMN,
    NUMERIC_COLUMNS,
    TIMESTAMP_COLUMN,
    generate_demo_data,
)
from tasks.evaluate import evaluate_champion, evaluate_version, latent_projection
from tasks.holdout_metrics import label_metrics, score_summary, threshold_policies
from tasks.io import Storage
from tasks.reconstruction_errors import (
    reconstruction_errors,
    reconstruction_metrics,
    reference_scales,
)
from tasks.records import headline
from tasks.settings import EvaluationSettings, TrainingSettings
from tasks.training import (
    discard_training_split,
    load_split,
    split_training_window,
)

NUMERIC, CATEGORICAL = list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS)
PARAMS = demo_fit_params(epochs=5)


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    manifest = generate_demo_data(
        root / "incoming", days=3, rows_per_day=700, seed=3, drift_day=None, malformed_day=None
    )
    return root, manifest


def _split(root, manifest, out="run", columns=None, seed=0, holdout_max_rows=10_000, paths=None):
    return split_training_window(
        batch_paths=paths or manifest.paths,
        columns=columns or demo_columns(label=LABEL_COLUMN),
        evaluation=EvaluationSettings(holdout_fraction=0.25, holdout_max_rows=holdout_max_rows),
        seed=seed,
        run=out,
        storage=Storage(str(root), "demo"),
    )


def evaluate(storage, version, split, *, run=None, seed=0, baselines=True, exclude=False):
    """:func:`evaluate_version` with the demo columns; the metrics."""
    return evaluate_version(
        version=version,
        split=split,
        columns=demo_columns(label=LABEL_COLUMN),
        training=TrainingSettings(exclude_labelled_anomalies=exclude, seed=seed),
        evaluation=EvaluationSettings(baselines=baselines),
        run=run,
        storage=storage,
    ).metrics


@pytest.fixture(scope="module")
def trained(batches):
    root, manifest = batches
    split = _split(root, manifest)
    storage = Storage(str(root), "demo")
    version = fit_demo_challenger(split, manifest, storage, epochs=5)
    return root, manifest, split, storage, version


# ------------------------------------------------------------------------------------ splits
def test_time_split_holds_out_the_latest_rows_and_keeps_every_row(batches):
    root, manifest = batches
    split = _split(root, manifest, out="time")
    train, holdout = pq.read_table(split.train_path), pq.read_table(split.holdout_path)
    assert split.method == "time"
    assert train.num_rows + holdout.num_rows == sum(manifest.rows_per_file)
    assert holdout.num_rows == round(0.25 * sum(manifest.rows_per_file))
    latest_train = max(train.column(TIMESTAMP_COLUMN).to_pylist())
    assert min(holdout.column(TIMESTAMP_COLUMN).to_pylist()) >= latest_train
    assert split.holdout_start >= split.train_end
    ids = set(train.column(ID_COLUMN).to_pylist()) | set(holdout.column(ID_COLUMN).to_pylist())
    assert len(ids) == sum(manifest.rows_per_file)
    assert set(holdout.column(LABEL_COLUMN).to_pylist()) <= {0, 1}


def test_random_split_without_a_timestamp_is_seeded(batches):
    root, manifest = batches

    def holdout_ids(seed, out):
        split = _split(
            root,
            manifest,
            out=out,
            columns=demo_columns(timestamp=None, label=LABEL_COLUMN),
            seed=seed,
        )
        assert split.method == "random" and split.holdout_start is None
        return pq.read_table(split.holdout_path).column(ID_COLUMN).to_pylist()

    assert holdout_ids(1, "r1") == holdout_ids(1, "r2")
    assert set(holdout_ids(1, "r3")) != set(holdout_ids(2, "r4"))


def test_holdout_is_capped_by_a_seeded_sample(batches):
    root, manifest = batches
    split = _split(root, manifest, out="capped", holdout_max_rows=100)
    assert split.holdout_rows == 100
    assert split.train_rows == sum(manifest.rows_per_file) - round(
        0.25 * sum(manifest.rows_per_file)
    )


def test_discarding_the_split_keeps_only_the_holdout(batches):
    root, manifest = batches
    split = _split(root, manifest, out="discard")
    discard_training_split(split)
    assert not Path(split.train_path).exists() and Path(split.holdout_path).is_file()


def test_a_window_too_small_for_a_holdout_is_refused(batches, tmp_path):
    root, manifest = batches
    tiny = pq.read_table(manifest.paths[0]).slice(0, 2)
    pq.write_table(tiny, tmp_path / "tiny.parquet")
    with pytest.raises(ValueError, match="too few for a holdout"):
        split_training_window(
            batch_paths=[str(tmp_path / "tiny.parquet")],
            columns=demo_columns(),
            evaluation=EvaluationSettings(holdout_fraction=0.5),
            seed=0,
            run="out",
            storage=Storage(str(tmp_path), "demo"),
        )


# ------------------------------------------------------------------------- metric functions
def test_label_metrics_match_a_hand_count():
    labels = np.array([1, 1, 0, 0, 0, 1, 0, 0])
    scores = np.array([9.0, 1.0, 8.0, 0.5, 0.2, 7.0, 0.1, 3.0])
    metrics = label_metrics(labels, scores, threshold=2.0)
    # flagged (> 2): rows 0, 2, 5, 7 -> tp 2 (0, 5), fp 2 (2, 7), fn 1 (1), tn 3
    assert metrics["confusion"] == {"tp": 2, "fp": 2, "tn": 3, "fn": 1}
    assert metrics["precision"] == pytest.approx(0.5)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert metrics["false_positive_rate"] == pytest.approx(2 / 5)
    # top-3 scores: rows 0 (9), 2 (8), 5 (7) -> 2 of 3 are anomalies
    assert metrics["precision_at_k"] == {"k": 3, "precision": pytest.approx(2 / 3)}
    # 15 positive/negative pairs, 12 ranked correctly (row 1 beats only rows 3, 4, 6)
    assert metrics["auroc"] == pytest.approx(12 / 15)


def test_label_metrics_with_one_class_leave_auroc_undefined():
    metrics = label_metrics(np.zeros(5), np.arange(5.0), threshold=2.5)
    assert metrics["auroc"] is None and metrics["auprc"] is None
    assert metrics["false_positive_rate"] == pytest.approx(0.4)


def test_score_summary_measures_percentile_calibration():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=2000)
    calibrated = score_summary(scores, rng.uniform(size=2000), 1.0, None)
    shifted = score_summary(scores, rng.uniform(0.5, 1.0, size=2000), 1.0, None)
    assert calibrated["percentile_ks"] < 0.05
    assert shifted["percentile_ks"] > 0.45
    assert calibrated["flag_rate"] == pytest.approx((scores > 1.0).mean())


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(size=5000))
    assert population_stability_index(reference, pd.Series(rng.normal(size=5000)), "numeric") < 0.02
    shifted = pd.Series(rng.normal(1.0, 1.0, size=5000))
    assert population_stability_index(reference, shifted, "numeric") > 0.25
    levels = pd.Series(rng.choice(["a", "b", "c"], p=[0.6, 0.3, 0.1], size=5000))
    moved = pd.Series(rng.choice(["a", "b", "c", None], p=[0.1, 0.3, 0.3, 0.3], size=5000))
    assert population_stability_index(levels, levels.sample(frac=1, random_state=1), "x") < 0.01
    assert population_stability_index(levels, moved, "categorical") > 0.25


def test_leakage_scan_flags_a_feature_that_copies_the_label():
    rng = np.random.default_rng(0)
    n = 600
    labels = (rng.uniform(size=n) < 0.1).astype(np.int8)
    frame = pd.DataFrame(
        {
            "noise": rng.normal(size=n),
            "copy": labels + rng.normal(0, 0.05, size=n),
            "level": np.where(labels == 1, "bad", rng.choice(["x", "y"], size=n)).astype(object),
        }
    )
    train, holdout = frame.iloc[:400], frame.iloc[400:]
    scan = leakage_scan(train, labels[:400], holdout, labels[400:], ["noise", "copy"], ["level"])
    by_column = {row["column"]: row["auroc"] for row in scan}
    assert by_column["copy"] > 0.99 and by_column["level"] > 0.99
    assert by_column["noise"] < 0.7
    quality = data_quality(train, labels[:400], holdout, labels[400:], ["noise", "copy"], ["level"])
    leaks = [w for w in quality["warnings"] if w.startswith("possible leakage")]
    assert len(leaks) == 2 and any("copy" in w for w in leaks)


def test_class_balance_and_few_positives_are_reported():
    balance = class_balance(np.array([0, 0, 0, 1]), np.array([0, 1, 0, 0, 0]))
    assert balance["train"] == {"rows": 4, "positives": 1, "share": 0.25}
    assert balance["holdout"]["positives"] == 1
    frame = pd.DataFrame({"x": np.arange(9.0)})
    quality = data_quality(
        frame.iloc[:4], np.array([0, 0, 0, 1]), frame.iloc[4:], np.array([0, 1, 0, 0, 0]),
        ["x"], [],
    )  # fmt: skip
    assert any(w.startswith("class imbalance") for w in quality["warnings"])


def test_latent_projection_keeps_the_two_widest_directions():
    rng = np.random.default_rng(0)
    latent = np.column_stack(
        [rng.normal(0, 10, 500), rng.normal(0, 3, 500), rng.normal(0, 0.1, 500)]
    )
    projected = latent_projection(latent)
    assert projected.shape == (500, 2)
    assert projected[:, 0].std() == pytest.approx(10, rel=0.1)
    assert projected[:, 1].std() == pytest.approx(3, rel=0.1)


# ------------------------------------------------------------------------ model evaluation
def test_reconstruction_errors_are_in_the_reference_units(trained):
    root, manifest, split, storage, version = trained

    detector, _ = storage.registry().load(version)
    holdout, _ = load_split(split.holdout_path, NUMERIC, CATEGORICAL, LABEL_COLUMN)
    scales = reference_scales(holdout, NUMERIC)
    base = reconstruction_metrics(reconstruction_errors(detector, holdout, scales))
    doubled = reconstruction_metrics(
        reconstruction_errors(detector, holdout, {k: 2 * v for k, v in scales.items()})
    )
    for one, two in zip(base["per_column"], doubled["per_column"], strict=True):
        if one["kind"] == "numeric":
            assert two["mse"] == pytest.approx(one["mse"] / 4, rel=1e-6)
            assert two["mae"] == pytest.approx(one["mae"] / 2, rel=1e-6)
            # missing inputs have nothing to compare with: they are left out
            assert one["rows"] == int(holdout[one["column"]].notna().sum())
        else:
            assert two["mse"] == pytest.approx(one["mse"])
            assert 0 <= one["mae"] <= 1 and 0 <= one["accuracy"] <= 1
    assert base["mse"] == pytest.approx(np.mean([c["mse"] for c in base["per_column"]]))
    assert base["rmse"] == pytest.approx(np.sqrt(base["mse"]))


def test_threshold_policies_are_calibrated_like_the_detector(trained):
    root, manifest, split, storage, version = trained

    detector, _ = storage.registry().load(version)
    holdout, labels = load_split(split.holdout_path, NUMERIC, CATEGORICAL, LABEL_COLUMN)
    train, _ = load_split(split.train_path, NUMERIC, CATEGORICAL, LABEL_COLUMN)
    scores = detector.decision_function(holdout)
    rows = threshold_policies(detector, scores, labels, detector.decision_function(train))
    by_policy = {(r["method"], r["value"]): r for r in rows}
    configured = [r for r in rows if r["configured"]]
    assert len(configured) == 1 and configured[0]["threshold"] == pytest.approx(detector.threshold_)
    assert by_policy[("fpr", 0.05)]["threshold"] < by_policy[("fpr", 0.01)]["threshold"]
    assert by_policy[("fpr", 0.05)]["flag_rate"] >= by_policy[("fpr", 0.01)]["flag_rate"]
    assert {"mean_std", "contamination"} <= {r["method"] for r in rows}
    assert all("f1" in r for r in rows)


def test_evaluate_version_reports_model_baselines_and_quality(trained):
    root, manifest, split, storage, version = trained
    metrics = evaluate(storage, version, split, run="run")
    assert metrics["model"]["version"] == version
    assert metrics["labels"]["auroc"] > 0.8  # planted anomalies are easy for a working model
    assert metrics["labels"]["positives"] + metrics["labels"]["negatives"] == split.holdout_rows
    assert metrics["reconstruction"]["rows"] == metrics["labels"]["negatives"]
    # Without PyOD (the dev extra) the five anchors aeflow implements; PyOD adds two.
    names = [b["name"] for b in metrics["baselines"]]
    assert names[:5] == ["IForest", "ECOD", "HBOS", "KNN", "PCA"]
    assert set(names[5:]) <= {"AutoEncoder", "DIF"}
    assert all(0.5 < b["labels"]["auroc"] <= 1 for b in metrics["baselines"][:5])
    check = metrics["explanations"]
    assert check["rows"] > 0 and 0 <= check["top1"] <= check["top3"] <= 1
    assert metrics["training"]["epochs_run"] == len(metrics["training"]["train_loss"]) == 5
    assert {r["column"] for r in metrics["data_quality"]["shift"]} == set(NUMERIC + CATEGORICAL)
    rows = pd.read_parquet(metrics["holdout_scores_path"])
    assert len(rows) == split.holdout_rows
    assert (
        rows[ID_COLUMN].tolist() == pq.read_table(split.holdout_path).column(ID_COLUMN).to_pylist()
    )
    expected = {"anomaly_score", "anomaly_percentile", "is_anomaly", "label", "latent_x"}
    assert expected | {"score_IForest", "score_ECOD", "score_PCA"} <= set(rows.columns)
    assert rows["anomaly_percentile"].between(0, 1).all()
    assert headline(metrics)["auroc"] == metrics["labels"]["auroc"]


def test_evaluation_is_deterministic(trained):
    root, manifest, split, storage, version = trained

    def run():
        metrics = evaluate(storage, version, split, seed=5)
        for baseline in metrics["baselines"]:
            baseline.pop("fit_seconds")
        return metrics

    assert run() == run()


def test_evaluation_without_labels_has_no_label_metrics(batches):
    root, manifest = batches
    split = _split(root, manifest, out="unlabelled", columns=demo_columns())
    frame, labels = load_split(split.train_path, NUMERIC, CATEGORICAL)
    assert labels is None
    detector = AutoencoderDetector(**{**PARAMS, "epochs": 2}).fit(frame)
    storage = Storage(str(root / "unlabelled"), "demo")

    detector.save(root / "bundle")
    version = storage.registry().register(root / "bundle")
    metrics = evaluate(storage, version, split, baselines=False)
    assert metrics["labels"] is None and metrics["baselines"] == []
    assert metrics["data_quality"]["class_balance"] is None
    assert metrics["data_quality"]["leakage"] == []
    assert metrics["reconstruction"]["rows"] == split.holdout_rows
    assert metrics["scores"]["normal_flag_rate"] == metrics["scores"]["flag_rate"]


def test_a_champion_that_cannot_score_the_holdout_reports_why(trained, tmp_path):
    root, manifest, split, storage, version = trained

    frame, _ = load_split(split.train_path, NUMERIC, CATEGORICAL)
    frame["bonus"] = 1.0  # a column the holdout does not have
    detector = AutoencoderDetector(
        **{**PARAMS, "numeric_columns": [*NUMERIC, "bonus"], "epochs": 1}
    )
    detector.fit(frame).save(tmp_path / "bundle")
    here, empty = Storage(str(tmp_path), "demo"), Storage(str(tmp_path / "empty"), "demo")
    registry = here.registry()
    old = registry.register(tmp_path / "bundle")
    registry.promote(old, "test")

    def champion(challenger, storage):
        return evaluate_champion(
            champion_version=storage.registry().champion(),
            challenger_version=challenger,
            split=split,
            scales={},
            storage=storage,
        )

    result = champion("a-challenger", here)
    assert result.version == old and result.reconstruction is None
    assert "bonus" in result.error
    assert champion(old, here) is None
    assert champion("a-challenger", empty) is None


def test_excluded_anomalies_leave_the_baselines_but_not_the_quality_checks(trained):
    root, manifest, split, storage, version = trained
    metrics = evaluate(storage, version, split, exclude=True)
    balance = metrics["data_quality"]["class_balance"]["train"]
    assert balance["rows"] == split.train_rows and balance["positives"] > 0
    normal_rows = balance["rows"] - balance["positives"]
    for baseline in metrics["baselines"]:
        assert baseline["fit_rows"] == normal_rows - normal_rows // 10


def test_a_window_where_some_batches_lack_the_label_is_evaluated_without_labels(batches):
    """Production batches arrive without the label: the split says so and evaluation goes on."""
    root, manifest = batches
    unlabelled = root / "unlabelled-day.parquet"
    pq.write_table(pq.read_table(manifest.paths[2]).drop_columns([LABEL_COLUMN]), unlabelled)
    paths = [*manifest.paths[:2], str(unlabelled)]
    split = _split(root, manifest, out="partly-labelled", paths=paths)
    assert split.label_column is None
    assert f"label column {LABEL_COLUMN!r} is in 2 of 3 batches" in split.label_note
    frame, _ = load_split(split.train_path, NUMERIC, CATEGORICAL)
    detector = AutoencoderDetector(**{**PARAMS, "epochs": 2, "patience": 0}).fit(frame)
    storage = Storage(str(root / "partly-labelled"), "demo")

    detector.save(root / "partly-labelled-bundle")
    version = storage.registry().register(root / "partly-labelled-bundle")
    metrics = evaluate(storage, version, split, baselines=False)
    warnings = metrics["data_quality"]["warnings"]
    assert metrics["labels"] is None and split.label_note in warnings
    # two epochs are not enough: the fit stopped at its cap while still improving
    assert metrics["training"]["epochs"] == 2
    assert detector.history_["best_epoch"] == 2
    assert any("stopped at its epoch cap (2) while still improving" in w for w in warnings)
    assert metrics["training"]["calibration"]["source"] in ("validation", "fit")


def test_columns_that_cannot_inform_the_model_are_named():
    # A constant, an empty and an id-like column trained without a word; the constant one then
    # showed up in top_features of ordinary rows (its reconstruction noise over a floored
    # typical error).
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "const": np.full(n, 1.0),
            "empty": np.full(n, np.nan),
            "present": np.where(rng.random(n) < 0.5, 3.0, np.nan),  # a presence flag informs
            "city": rng.choice(["a", "b"], n).astype(object),
            "one_level": np.full(n, "EU", dtype=object),
            "user": np.array([f"u{i}" for i in rng.permutation(n)], dtype=object),
        }
    )
    numeric, categorical = ["x", "const", "empty", "present"], ["city", "one_level", "user"]
    quality = data_quality(frame.iloc[:300], None, frame.iloc[300:], None, numeric, categorical)
    found = [w for w in quality["warnings"] if w.startswith("uninformative")]
    assert len(found) == 1, quality["warnings"]
    for said in (
        "'const' is constant (1.0)",
        "'empty' has no value",
        "'one_level' is constant ('EU')",
        "'user' has 300 distinct values in 300 rows",
        "leave them out of columns.numeric / columns.categorical",
    ):
        assert said in found[0], found[0]
    assert all(f"'{c}'" not in found[0] for c in ("x", "present", "city"))
