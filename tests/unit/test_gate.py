"""The promotion gate: decisions on metrics, and real challengers against a real champion."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from model_support import demo_columns

from models.registry import ModelRegistry
from tasks.demo_data import (
    CATEGORICAL_COLUMNS,
    LABEL_COLUMN,
    NUMERIC_COLUMNS,
    generate_demo_data,
)
from tasks.evaluate import evaluate_champion, evaluate_version, headline
from tasks.gate import apply_gate, gate_decision
from tasks.io import Storage
from tasks.records import ChampionEvaluation
from tasks.settings import EvaluationSettings, TrainingSettings
from tasks.training import fit_from_split, split_training_window

NUMERIC, CATEGORICAL = list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS)


def metrics(mse: float | None, auroc: float | None = None) -> dict:
    labels = None if auroc is None else {"auroc": auroc}
    return {"reconstruction": {"mse": mse}, "labels": labels}


def champion(
    mse: float | None, auroc: float | None = None, version: str = "v1"
) -> ChampionEvaluation:
    return ChampionEvaluation(version=version, **metrics(mse, auroc))


def decide(challenger, held, reconstruction_margin=0.05, auroc_margin=0.01):
    """:func:`gate_decision` with the given margins."""
    margins = EvaluationSettings(
        reconstruction_margin=reconstruction_margin, auroc_margin=auroc_margin
    )
    return gate_decision(challenger, held, evaluation=margins)


# ------------------------------------------------------------------------------ decisions
def test_the_first_model_is_promoted():
    decision = decide(metrics(0.9), None)
    assert decision.decision == "promote" and decision.champion_version is None
    assert "no champion yet" in decision.reasons[0]


@pytest.mark.parametrize(
    ("challenger_mse", "expected"),
    [(0.80, "promote"), (1.00, "promote"), (1.049, "promote"), (1.051, "refuse"), (2.0, "refuse")],
)
def test_reconstruction_may_be_worse_only_within_the_margin(challenger_mse, expected):
    decision = decide(metrics(challenger_mse), champion(1.0), reconstruction_margin=0.05)
    assert decision.decision == expected
    (comparison,) = decision.comparisons
    assert comparison["metric"] == "reconstruction_mse"
    assert comparison["limit"] == pytest.approx(1.05)
    assert comparison["passed"] is (expected == "promote")
    reason = decision.reasons[0]
    assert f"{challenger_mse:.4f}" in reason
    if challenger_mse <= 1.0:
        assert "better than (or as good as) the champion" in reason and "margin" not in reason
    elif expected == "promote":
        assert "slightly worse, within the 5% margin" in reason
    else:
        assert "worse than the champion by more than the 5% margin" in reason


def test_a_clear_gain_is_described_as_a_gain_not_as_within_the_margin():
    """A +0.099 AUROC gain once read "within the 0.01 margin"."""
    decision = decide(metrics(0.5, auroc=0.949), champion(1.0, auroc=0.85), 0.05, 0.01)
    auroc = next(r for r in decision.reasons if r.startswith("holdout AUROC"))
    assert "(+0.0990): better than (or as good as) the champion" in auroc
    assert "margin" not in auroc
    lower = decide(metrics(0.5, auroc=0.945), champion(1.0, auroc=0.95), 0.05, 0.01)
    assert any("slightly lower, within the 0.01 margin" in r for r in lower.reasons)


def test_a_lower_auroc_beyond_the_margin_refuses_even_a_better_reconstruction():
    decision = decide(metrics(0.5, auroc=0.90), champion(1.0, auroc=0.95), 0.05, 0.01)
    assert decision.decision == "refuse"
    by_metric = {c["metric"]: c["passed"] for c in decision.comparisons}
    assert by_metric == {"reconstruction_mse": True, "auroc": False}
    assert any("AUROC 0.9000 vs champion 0.9500" in r for r in decision.reasons)
    within = decide(metrics(0.5, auroc=0.945), champion(1.0, auroc=0.95), 0.05, 0.01)
    assert within.decision == "promote"


def test_auroc_is_skipped_when_the_holdout_has_one_class():
    decision = decide(metrics(0.9, auroc=None), champion(1.0, auroc=None))
    assert decision.decision == "promote"
    assert [c["metric"] for c in decision.comparisons] == ["reconstruction_mse"]


def test_a_champion_that_cannot_score_the_holdout_is_replaced():
    broken = ChampionEvaluation(version="v0", error="ValueError: X is missing 1 column(s)")
    decision = decide(metrics(0.9), broken)
    assert decision.decision == "promote" and "cannot score this holdout" in decision.reasons[0]


def test_missing_challenger_metrics_refuse():
    assert decide(metrics(None), champion(1.0)).decision == "refuse"


@pytest.mark.parametrize(
    ("reconstruction_margin", "auroc_margin", "message"),
    [(-0.1, 0.01, "reconstruction_margin"), (0.05, 1.5, "auroc_margin")],
)
def test_bad_margins_are_errors_that_say_the_rule(reconstruction_margin, auroc_margin, message):
    """The evaluation section refuses them when the config is read, naming the key."""
    with pytest.raises(ValueError, match=message):
        decide(metrics(1.0), champion(1.0), reconstruction_margin, auroc_margin)


# ------------------------------------------------------------------- real models, registry
@pytest.fixture(scope="module")
def window(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    manifest = generate_demo_data(
        root / "incoming", days=3, rows_per_day=700, seed=3, drift_day=None, malformed_day=None
    )
    split = split_training_window(
        batch_paths=manifest.paths,
        columns=demo_columns(label=LABEL_COLUMN),
        evaluation=EvaluationSettings(holdout_fraction=0.25),
        seed=0,
        out_dir=str(root / "run"),
    )
    # The deliberately worse challenger's training rows: every column shuffled on its own, so the
    # rows no longer hang together (the marginals stay the same).
    shuffled = pq.read_table(split.train_path).to_pandas()
    rng = np.random.default_rng(0)
    for column in NUMERIC + CATEGORICAL:
        shuffled[column] = shuffled[column].to_numpy()[rng.permutation(len(shuffled))]
    shuffled_path = str(root / "shuffled.parquet")
    pq.write_table(pa.Table.from_pandas(shuffled, preserve_index=False), shuffled_path)
    return root, manifest, split, shuffled_path


def train_and_gate(window, storage, train_path, epochs, promote=True):
    """Fit and register a challenger, evaluate it and the champion on the holdout, apply the gate."""
    root, manifest, split, _ = window
    columns = demo_columns(label=LABEL_COLUMN)
    params = {
        "numeric_columns": NUMERIC,
        "categorical_columns": CATEGORICAL,
        "epochs": epochs,
        "learning_rate": 3e-3,
        "device": "cpu",
    }
    version = fit_from_split(
        split=split.replace(train_path=train_path),
        training_batches=manifest.batch_ids,
        columns=columns,
        training=TrainingSettings(max_rows=100_000, seed=0),
        detector_params=params,
        storage=storage,
    ).version
    evaluation = evaluate_version(
        version=version,
        split=split,
        columns=columns,
        training=TrainingSettings(),
        evaluation=EvaluationSettings(baselines=False),
        out_dir=None,
        storage=storage,
    )
    held = evaluate_champion(
        challenger_version=version,
        split=split,
        scales=evaluation.reconstruction_scales,
        storage=storage,
    )
    decision = decide(evaluation.metrics, held)
    record = apply_gate(
        version=version,
        decision=decision,
        promote=promote,
        evaluation=headline(evaluation.metrics),
        storage=storage,
    )
    return version, record


def test_a_worse_challenger_is_refused_and_a_better_one_promoted(window):
    storage = Storage(str(window[0] / "root"), "demo")
    registry = ModelRegistry(storage.models)
    champion_version, first = train_and_gate(window, storage, window[2].train_path, epochs=5)
    assert first.promoted and registry.champion() == champion_version

    # One epoch on shuffled columns: the gate refuses it and the champion stays.
    worse, refused = train_and_gate(window, storage, window[3], epochs=1)
    assert refused.decision == "refuse" and not refused.promoted
    assert registry.champion() == champion_version
    mse = next(c for c in refused.comparisons if c["metric"] == "reconstruction_mse")
    assert not mse["passed"] and mse["challenger"] > mse["limit"]
    entry = registry.entry(worse)
    assert entry["gate"]["decision"] == "refuse" and entry["gate"]["reasons"] == refused.reasons
    assert entry["evaluation"]["reconstruction_mse"] == mse["challenger"]
    event = registry.champion_state()["history"][-1]
    assert event["action"] == "refuse" and event["version"] == worse
    assert "worse than the champion" in event["reason"]

    # More epochs on the real rows: better on reconstruction and AUROC, so it is promoted.
    better, promoted = train_and_gate(window, storage, window[2].train_path, epochs=12)
    assert promoted.decision == "promote" and promoted.promoted, promoted.reasons
    assert registry.champion() == better
    assert {c["metric"] for c in promoted.comparisons} == {"reconstruction_mse", "auroc"}
    assert all(c["passed"] for c in promoted.comparisons)
    assert promoted.champion_before == champion_version
    state = registry.champion_state()
    assert state["history"][-1]["action"] == "promote"
    assert state["history"][-1]["details"]["comparisons"] == promoted.comparisons
    # the refused challenger never was champion: a rollback goes back to the first model
    assert registry.rollback("test")["version"] == champion_version


def test_without_promotion_the_decision_is_recorded_but_not_applied(window):
    storage = Storage(str(window[0] / "dry-run"), "demo")
    registry = ModelRegistry(storage.models)
    first, _ = train_and_gate(window, storage, window[2].train_path, epochs=2)
    version, record = train_and_gate(window, storage, window[2].train_path, epochs=3, promote=False)
    assert record.applied is False and record.promoted is False
    assert registry.champion() == first
    assert registry.entry(version)["gate"]["applied"] is False
    assert registry.champion_state()["history"][-1]["version"] == first


def test_a_champion_replaced_during_evaluation_refuses_the_challenger(tmp_path, window):
    storage = Storage(str(tmp_path), "demo")
    registry = ModelRegistry(storage.models)
    first, _ = train_and_gate(window, storage, window[2].train_path, epochs=1)
    second, record = train_and_gate(window, storage, window[2].train_path, epochs=1, promote=False)
    # The second challenger was compared with a champion that is no longer the champion.
    stale = decide(metrics(0.1), champion(1.0, version="an-earlier-champion"))
    record = apply_gate(version=second, decision=stale, storage=storage)
    assert record.decision == "refuse" and not record.promoted
    assert "champion changed" in record.reasons[-1]
    assert registry.champion() == first
