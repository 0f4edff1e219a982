"""Training with a label threshold method (tasks.label_threshold): the threshold is chosen on the
labelled validation rows or on analysts' verdicts and saved with the bundle; with too few labels
the label-free fallback stays and the record says so; the evaluation's policies show the label
policies chosen on the training window's labelled rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models import AutoencoderDetector
from tasks.holdout_metrics import configured_policy, threshold_policies
from tasks.io import Storage
from tasks.label_threshold import LabelledRows, apply_label_threshold, validation_labelled_rows
from tasks.records import TrainingSplit
from tasks.settings import ColumnsSettings, ThresholdSettings, TrainingSettings
from tasks.training import fit_from_split

N_ROWS, ANOMALY_SHARE = 1500, 0.1
COLUMNS = ColumnsSettings(id="id", numeric=["x", "y", "z"], label="label")
PARAMS = {
    "numeric_columns": ["x", "y", "z"],
    "categorical_columns": [],
    "hidden_sizes": (16,),
    "latent_dim": 2,
    "epochs": 4,
    "device": "cpu",
    "random_state": 0,
}


def labelled_frame(seed: int = 0) -> pd.DataFrame:
    """Normal rows on a line in 3-D (x, 2x, -x plus noise); anomalies off it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N_ROWS)
    label = (rng.random(N_ROWS) < ANOMALY_SHARE).astype(np.int8)
    noise = rng.normal(scale=0.1, size=(N_ROWS, 3)) + label[:, None] * rng.normal(
        scale=2.0, size=(N_ROWS, 3)
    )
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(N_ROWS)],
            "x": x + noise[:, 0],
            "y": 2 * x + noise[:, 1],
            "z": -x + noise[:, 2],
            "label": label,
        }
    )


@pytest.fixture(scope="module")
def detector() -> AutoencoderDetector:
    frame = labelled_frame()
    return AutoencoderDetector(**PARAMS).fit(frame.loc[frame["label"] == 0, ["x", "y", "z"]])


def test_the_validation_rows_keep_the_windows_anomaly_share(detector):
    frame = labelled_frame()
    labels = frame["label"].to_numpy()
    keep = labels == 0  # training.exclude_labelled_anomalies
    rows = validation_labelled_rows(frame, labels, keep, detector=detector, seed=0)
    assert rows.source == "validation"
    assert rows.labels.mean() == pytest.approx(labels.mean(), abs=0.01)
    assert f"{int(rows.labels.sum())} of them labelled anomalies" in rows.detail


def test_a_label_threshold_replaces_the_fallback_and_is_recorded(detector):
    frame = labelled_frame(seed=1)
    rows = LabelledRows(frame[["x", "y", "z"]], frame["label"].to_numpy(), "validation", "test")
    fitted = AutoencoderDetector(**PARAMS).fit(frame.loc[frame["label"] == 0, ["x", "y", "z"]])
    fallback = fitted.threshold_
    settings = ThresholdSettings(method="target_recall", value=0.8)
    record = apply_label_threshold(fitted, rows, threshold=settings)
    assert record["source"] == "labels" and record["fallback"] is None
    assert record["labels"]["operating_point"]["recall"] >= 0.8
    assert fitted.threshold_ == record["labels"]["operating_point"]["threshold"] != fallback
    assert fitted.metadata_["calibration"] == record
    assert configured_policy(fitted) == ("target_recall", 0.8)
    recall = (fitted.decision_function(rows.frame)[rows.labels == 1] > fitted.threshold_).mean()
    assert recall >= 0.8


def test_too_few_labels_keep_the_fallback_and_say_why(detector):
    frame = labelled_frame(seed=1)[:40]
    few = LabelledRows(frame[["x", "y", "z"]], frame["label"].to_numpy(), "feedback", "40 rows")
    strict = ThresholdSettings(method="target_recall", value=0.8, min_anomalies=30)
    before = detector.threshold_
    record = apply_label_threshold(detector, few, threshold=strict)
    assert detector.threshold_ == before and record["rows"] > 0
    assert record["fallback"] == {"method": "fpr", "value": 0.01}
    assert "target_recall not used" in record["note"] and "at least 30" in record["note"]


def test_training_with_a_label_method_saves_the_chosen_threshold(tmp_path: Path):
    frame = labelled_frame(seed=2)
    train = tmp_path / "run" / "train.parquet"
    train.parent.mkdir()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), train)
    split = TrainingSplit(
        method="random", train_path=str(train), holdout_path=str(tmp_path / "holdout.parquet"),
        train_rows=N_ROWS, holdout_rows=0, holdout_fraction=0.2, seed=0, timestamp_column=None,
        label_column="label", label_note=None,
    )  # fmt: skip
    storage = Storage(str(tmp_path), "demo")
    reference = fit_from_split(
        split=split,
        training_batches=["b1"],
        columns=COLUMNS,
        training=TrainingSettings(exclude_labelled_anomalies=True, seed=0),
        detector_params={**PARAMS, "validation_fraction": 0.3},
        storage=storage,
        threshold=ThresholdSettings(method="max_f1", min_anomalies=5, min_normals=5),
    )
    calibration = reference.metrics["calibration"]
    assert calibration["method"] == "max_f1" and calibration["source"] == "labels"
    assert calibration["labels"]["anomalies"] >= 5
    loaded, _ = storage.registry().load(reference.version)
    assert loaded.threshold_ == reference.metrics["threshold"]
    assert loaded.metadata_["calibration"]["method"] == "max_f1"

    # the evaluation's policies: the configured one and the label policies, each where chosen
    scores = loaded.decision_function(frame[["x", "y", "z"]])
    labels = frame["label"].to_numpy()
    policies = threshold_policies(loaded, scores, labels, scores, labelled=(scores, labels))
    by_method = {(p["method"], p["configured"]): p for p in policies}
    assert by_method[("max_f1", True)]["fitted_on"] == "the model's calibration"
    assert by_method[("target_precision", False)]["fitted_on"] == "labelled training-window rows"
    assert by_method[("target_precision", False)]["precision"] >= 0.9
    assert ("max_f1", False) not in by_method  # the configured max_f1 is not listed twice


def test_the_pr_curve_marks_each_policys_operating_point():
    from matplotlib.figure import Figure

    from tasks.report.figures import _operating_points

    ax = Figure().subplots()
    policies = [
        {"method": "max_f1", "value": 0.01, "configured": True, "precision": 0.8, "recall": 0.6},
        {"method": "fpr", "value": 0.01, "configured": False, "precision": 0.5, "recall": 0.7},
        {"method": "fpr", "value": 0.05, "configured": False, "precision": None, "recall": None},
    ]
    _operating_points(ax, policies)
    marked = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert marked == {"max_f1 (configured)": [[0.6, 0.8]], "fpr 0.01": [[0.7, 0.5]]}
