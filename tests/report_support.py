"""The evaluation pipeline the report tests share: demo batches -> split -> fit -> evaluate ->
gate -> report, on the real storage layout under a temporary root."""

from __future__ import annotations

from pathlib import Path

from challenger_support import evaluate_and_gate, fit_demo_challenger
from model_support import demo_columns

from tasks.demo_data import generate_demo_data
from tasks.io import Storage
from tasks.registry import record_report
from tasks.report import create_report
from tasks.settings import EvaluationSettings
from tasks.training import split_training_window


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
    version = fit_demo_challenger(split, manifest, storage, epochs=3, label=label_column)
    gated = evaluate_and_gate(
        version,
        split,
        storage,
        evaluation=EvaluationSettings(),
        label=label_column,
        out_dir=run_dir,
    )
    written = create_report(
        run="run-1",
        evaluation=gated.evaluation,
        champion=gated.champion,
        gate=gated.gate,
        storage=storage,
    )
    record_report(version=version, run="run-1", report=written, storage=storage)
    return {
        "written": written,
        "models": storage.models,
        "version": version,
        "gate": gated.gate.to_dict(),
    }
