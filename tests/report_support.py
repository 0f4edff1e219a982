"""The evaluation pipeline the report tests share: demo batches -> split -> fit -> evaluate ->
gate -> report, on the real storage layout under a temporary root."""

from __future__ import annotations

from pathlib import Path

from model_support import demo_columns

from tasks.demo_data import (
    CATEGORICAL_COLUMNS,
    NUMERIC_COLUMNS,
    generate_demo_data,
)
from tasks.evaluate import evaluate_champion, evaluate_version, headline
from tasks.gate import apply_gate, gate_decision
from tasks.io import Storage
from tasks.registry import record_report
from tasks.report import create_report
from tasks.settings import EvaluationSettings, TrainingSettings
from tasks.training import fit_from_split, split_training_window

NUMERIC, CATEGORICAL = list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS)


def run_and_report(root: Path, label_column: str | None, seed: int = 11) -> dict:
    """Build a 3-epoch model on 3 small demo days and write its report; returns
    ``{"written": create_report's paths, "models": root, "version": str, "gate": dict}``."""
    manifest = generate_demo_data(
        root / "incoming", days=3, rows_per_day=500, seed=seed, drift_day=None, malformed_day=None
    )
    storage = Storage(str(root), "demo")
    run_dir = storage.reports("run-1")
    columns = demo_columns(label=label_column)
    split = split_training_window(
        batch_paths=manifest.paths,
        columns=columns,
        evaluation=EvaluationSettings(holdout_fraction=0.25),
        seed=0,
        out_dir=run_dir,
    )
    models = storage.models
    params = {
        "numeric_columns": NUMERIC,
        "categorical_columns": CATEGORICAL,
        "epochs": 3,
        "learning_rate": 3e-3,
        "device": "cpu",
    }
    version = fit_from_split(
        split=split,
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
        evaluation=EvaluationSettings(),
        out_dir=run_dir,
        storage=storage,
    )
    champion = evaluate_champion(
        challenger_version=version,
        split=split,
        scales=evaluation.reconstruction_scales,
        storage=storage,
    )
    decision = gate_decision(evaluation.metrics, champion, evaluation=EvaluationSettings())
    gate = apply_gate(
        version=version, decision=decision, evaluation=headline(evaluation.metrics), storage=storage
    )
    written = create_report(
        run="run-1", evaluation=evaluation, champion=champion, gate=gate, storage=storage
    )
    record_report(version=version, run="run-1", report=written, storage=storage)
    return {"written": written, "models": models, "version": version, "gate": gate.to_dict()}
