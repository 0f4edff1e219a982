"""The objectives a search optimises, and one trial: fit on the search's fit rows, score it.

Every output of `aeflow tune` states its objective with :data:`OBJECTIVES` (what it measures, which
way is better, and its limits).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from models import AutoencoderDetector
from tasks.tuning.records import (
    COMPLETE,
    FAILED,
    PRUNED,
    PruningRule,
    SearchData,
    TrialOutcome,
    TrialSpec,
)


@dataclass(frozen=True)
class Objective:
    """An objective: its ``name``, ``direction`` ("maximize"/"minimize"), what it is and its limits."""

    name: str
    direction: str
    statement: str
    limits: str


OBJECTIVES: dict[str, Objective] = {
    "auprc": Objective(
        "auprc",
        "maximize",
        "AUPRC (average precision) of the anomaly score against the label on a labelled "
        "validation split of the training part; the evaluation holdout stays untouched for the gate",
        "The validation rows come from the training window, so they share its anomaly types and "
        "rate; a detector tuned on them is tuned for the anomalies already labelled, not for new "
        "kinds. With few labelled anomalies in the validation split the value is noisy.",
    ),
    "reconstruction": Objective(
        "reconstruction",
        "minimize",
        "mean reconstruction loss per row on held-out validation rows of the training part "
        "(the best epoch's), in the preprocessed feature space",
        "Without labels nothing measures detection: a low reconstruction loss on clean rows "
        "selects features (a faithful, compact code), not detectors; a network that "
        "also reconstructs anomalies well scores low and detects nothing. Losses are comparable "
        "only under one preprocessing, so 'scaling' is held at the config's value. Check the "
        "tuned model's flag rate and report before trusting it; the gate still decides.",
    ),
    "downstream": Objective(
        "downstream",
        "maximize",
        "AUROC of a logistic regression on the encoded (latent) features predicting "
        "tuning.downstream_label, 5-fold stratified cross-validation on validation rows of the "
        "training part",
        "It measures how linearly predictive the code is for this one label; other downstream "
        "models and labels may prefer other parameters, and it says nothing about anomaly "
        "detection quality.",
    ),
}

# torch's global random state drives initialisation and dropout, and its thread count is
# process-wide: trials that share a process take turns fitting, so each trial's result depends on
# its parameters and seed only (data loading and scoring still overlap).
_FIT_LOCK = threading.Lock()


class _Pruned(Exception):
    """Raised from the trainer's per-epoch callback to stop a trailing trial."""


def comparability_key(params: dict[str, Any]) -> str:
    """Trials whose validation losses are on one scale: same scaling and ensemble size."""
    return f"scaling={params.get('scaling', 'auto')};members={params.get('n_members', 1)}"


def _running_best(curve: list[float], epoch: int) -> float:
    """The best (lowest) value of ``curve`` up to ``epoch`` (1-based); an early-stopped curve keeps
    its best value after its last epoch."""
    return min(curve[: max(1, epoch)])


def should_prune(rule: PruningRule, key: str, curve: list[float]) -> bool:
    """Median rule: prune when this trial's best validation loss so far is above the median of
    the comparable finished trials' best-so-far at the same epoch (after the warm-up epochs, and
    once ``startup_trials`` comparable trials have finished)."""
    references = rule.references.get(key, [])
    epoch = len(curve)
    if not rule.enabled or epoch <= rule.warmup_epochs or len(references) < rule.startup_trials:
        return False
    median = statistics.median(_running_best(ref, epoch) for ref in references if ref)
    return _running_best(curve, epoch) > median


def objective_value(
    objective: str, detector: AutoencoderDetector, validation, labels, seed: int
) -> float:
    """The trial's value on the validation rows (n, n_features) with their 0/1 ``labels`` (see
    :data:`OBJECTIVES`; the reconstruction objective reads the fit's own held-out curve)."""
    if objective == "reconstruction":
        return float(min(detector.history_["val_loss"]))
    if objective == "auprc":
        from sklearn.metrics import average_precision_score

        return float(average_precision_score(labels, detector.decision_function(validation)))
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = StratifiedKFold(
        n_splits=min(5, int(np.bincount(labels).min())), shuffle=True, random_state=seed
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    codes = detector.transform(validation)
    return float(cross_val_score(model, codes, labels, cv=folds, scoring="roc_auc").mean())


def run_trial(spec: TrialSpec, data: SearchData) -> TrialOutcome:
    """Fit a detector with ``spec.params`` on the fit rows and score it on the validation rows.

    A trial whose validation curve trails (see :func:`should_prune`) stops early as ``pruned``; a
    trial whose parameters fail (a ValueError from the detector) is ``failed`` with the reason.
    """
    from tasks.training import load_split  # the search files hold rows as the training split does

    started = time.perf_counter()
    columns = (data.numeric, data.categorical, data.label, data.options or None)
    fit_rows, _ = load_split(data.fit_path, *columns)
    validation, labels = load_split(data.validation_path, *columns)
    key = comparability_key(spec.params)
    val_curve: list[float] = []
    train_curve: list[float] = []

    def on_epoch(epoch: int, n_epochs: int, train_loss: float, val_loss: float) -> None:
        train_curve.append(float(train_loss))
        val_curve.append(float(val_loss))
        if should_prune(spec.pruning, key, val_curve):
            raise _Pruned(
                f"pruned at epoch {epoch}: validation loss above the median of comparable trials"
            )

    def outcome(state: str, value: float | None, message: str = "") -> TrialOutcome:
        return TrialOutcome(
            spec.number,
            state,
            value,
            val_curve,
            train_curve,
            round(time.perf_counter() - started, 3),
            message,
        )

    detector = AutoencoderDetector(**spec.params)
    try:
        with _FIT_LOCK:
            detector.fit(fit_rows, progress=on_epoch)
        value = objective_value(data.objective, detector, validation, labels, spec.seed)
    except _Pruned as exc:
        return outcome(PRUNED, None, str(exc))
    except (ValueError, RuntimeError) as exc:
        return outcome(FAILED, None, f"{type(exc).__name__}: {exc}")
    if not math.isfinite(value):
        return outcome(FAILED, None, f"the objective is not finite ({value})")
    return outcome(COMPLETE, value)
