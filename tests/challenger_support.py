"""The challenger set-up the evaluation, gate and report tests share: a small detector fitted on a
demo split and registered (:func:`fit_demo_challenger`), then evaluated on the holdout beside the
champion and put through the promotion gate (:func:`evaluate_and_gate`), on the real storage
layout."""

from __future__ import annotations

from dataclasses import dataclass

from model_support import demo_columns

from tasks.demo_data import CATEGORICAL_COLUMNS, LABEL_COLUMN, NUMERIC_COLUMNS, DemoManifest
from tasks.evaluate import evaluate_champion, evaluate_version
from tasks.gate import apply_gate, gate_decision
from tasks.io import Storage
from tasks.records import ChampionEvaluation, Evaluation, GateDecision, TrainingSplit
from tasks.settings import EvaluationSettings, TrainingSettings
from tasks.training import fit_from_split


def demo_fit_params(epochs: int) -> dict:
    """Detector parameters of the small demo challengers: the demo's feature columns, ``epochs``
    epochs at learning rate 3e-3, on the CPU."""
    return {
        "numeric_columns": list(NUMERIC_COLUMNS),
        "categorical_columns": list(CATEGORICAL_COLUMNS),
        "epochs": epochs,
        "learning_rate": 3e-3,
        "device": "cpu",
    }


def fit_demo_challenger(
    split: TrainingSplit,
    manifest: DemoManifest,
    storage: Storage,
    *,
    epochs: int,
    label: str | None = LABEL_COLUMN,
) -> str:
    """Fit :func:`demo_fit_params` on ``split``'s training rows (the demo columns, ``label`` as
    the label column) and register it in ``storage``; its version."""
    return fit_from_split(
        split=split,
        training_batches=manifest.batch_ids,
        columns=demo_columns(label=label),
        training=TrainingSettings(max_rows=100_000, seed=0),
        detector_params=demo_fit_params(epochs),
        storage=storage,
    ).version


@dataclass(frozen=True)
class GatedChallenger:
    """A challenger's evaluation, the champion's on the same holdout rows, and the gate's decision
    (applied)."""

    evaluation: Evaluation
    champion: ChampionEvaluation | None
    gate: GateDecision


def evaluate_and_gate(
    version: str,
    split: TrainingSplit,
    storage: Storage,
    *,
    evaluation: EvaluationSettings,
    label: str | None = LABEL_COLUMN,
    run: str | None = None,
    promote: bool = True,
) -> GatedChallenger:
    """Evaluate challenger ``version`` on ``split``'s holdout, the champion on the same rows in its
    error units, and apply the gate with ``evaluation``'s margins (``promote=False``: a dry run)."""
    evaluated = evaluate_version(
        version=version,
        split=split,
        columns=demo_columns(label=label),
        training=TrainingSettings(),
        evaluation=evaluation,
        run=run,
        storage=storage,
    )
    champion = evaluate_champion(
        champion_version=storage.registry().champion(),
        challenger_version=version,
        split=split,
        scales=evaluated.reconstruction_scales,
        storage=storage,
    )
    decision = gate_decision(evaluated.metrics, champion, evaluation=evaluation)
    gate = apply_gate(
        version=version,
        decision=decision,
        promote=promote,
        evaluation=evaluated.headline,
        storage=storage,
    )
    return GatedChallenger(evaluated, champion, gate)
