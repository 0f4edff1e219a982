"""The evaluation pipeline the report tests share: demo batches -> split -> fit -> evaluate ->
gate -> report, on the real storage layout under a temporary root."""

from __future__ import annotations

from pathlib import Path

from tasks.demo_data import (
    CATEGORICAL_COLUMNS,
    ID_COLUMN,
    NUMERIC_COLUMNS,
    TIMESTAMP_COLUMN,
    generate_demo_data,
)
from tasks.evaluate import evaluate_champion, evaluate_version, headline
from tasks.gate import apply_gate, gate_decision
from tasks.report import create_report
from tasks.training import fit_from_split, split_training_window

NUMERIC, CATEGORICAL = list(NUMERIC_COLUMNS), list(CATEGORICAL_COLUMNS)


def run_and_report(root: Path, label_column: str | None, seed: int = 11) -> dict:
    """Build a 3-epoch model on 3 small demo days and write its report; returns
    ``{"written": create_report's paths, "models": root, "version": str, "gate": dict}``."""
    manifest = generate_demo_data(
        root / "incoming", days=3, rows_per_day=500, seed=seed, drift_day=None, malformed_day=None
    )
    run_dir = str(root / "reports" / "demo" / "run-1")
    split = split_training_window(
        manifest.paths, ID_COLUMN, TIMESTAMP_COLUMN, NUMERIC, CATEGORICAL,
        label_column=label_column, holdout_fraction=0.25, out_dir=run_dir,
    )  # fmt: skip
    models = str(root / "models" / "demo")
    params = {
        "numeric_columns": NUMERIC,
        "categorical_columns": CATEGORICAL,
        "epochs": 3,
        "learning_rate": 3e-3,
        "device": "cpu",
    }
    version = fit_from_split(
        split["train_path"], manifest.batch_ids, NUMERIC, CATEGORICAL, label_column, False,
        100_000, 0, params, models,
    )["version"]  # fmt: skip
    evaluation = evaluate_version(
        models, version, split, NUMERIC, CATEGORICAL, [ID_COLUMN, TIMESTAMP_COLUMN],
        out_dir=run_dir,
    )  # fmt: skip
    champion = evaluate_champion(models, version, split, evaluation["reconstruction"]["scales"])
    gate = apply_gate(
        models, version, gate_decision(evaluation, champion), True, headline(evaluation)
    )
    written = create_report("demo", "run-1", evaluation, champion, gate, run_dir, models)
    return {"written": written, "models": models, "version": version, "gate": gate}
