"""The promotion gate: a newly trained challenger replaces the champion only when it is not worse.

Both models are evaluated on the same holdout rows (the challenger's, see tasks/evaluate.py), with
the same error units. The challenger passes when

- its reconstruction MSE (on the holdout rows not labelled anomalous) is at most
  ``champion MSE * (1 + reconstruction_margin)``, and
- with labels, its AUROC is at least ``champion AUROC - auroc_margin``.

The decision and its reasons go into the challenger's registry entry and into champion.json's
history (a ``promote`` or a ``refuse`` event), so `aeflow models show` can always say why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.events import emit, model_gated
from tasks.io import Storage
from tasks.records import ChampionEvaluation, Evaluation, GateDecision
from tasks.settings import EvaluationSettings


def _record_comparison(result: dict[str, Any], comparison: dict[str, Any], reason: str) -> None:
    """Add one challenger-vs-champion comparison (metric, challenger, champion, margin, limit,
    passed) and its reason to the gate ``result``; a failed comparison makes the decision
    "refuse"."""
    result["comparisons"].append(comparison)
    result["reasons"].append(reason)
    if not comparison["passed"]:
        result["decision"] = "refuse"


def _reconstruction_mse(metrics: Mapping[str, Any] | None) -> float | None:
    reconstruction = (metrics or {}).get("reconstruction") or {}
    return reconstruction.get("mse")


def _auroc(metrics: Mapping[str, Any] | None) -> float | None:
    labels = (metrics or {}).get("labels") or {}
    return labels.get("auroc")


def gate_decision(
    challenger: Mapping[str, Any],
    champion: ChampionEvaluation | None,
    *,
    evaluation: EvaluationSettings,
    identical_champion: str | None = None,
) -> GateDecision:
    """Compare a challenger's holdout metrics with the champion's on the same rows.

    Args:
        challenger: metrics with ``reconstruction.mse`` and, when labelled, ``labels.auroc``
            (:attr:`tasks.records.Evaluation.metrics`).
        champion: the champion on the same rows (:func:`tasks.evaluate.evaluate_champion`); None
            when there is no champion yet.
        evaluation: the margins: ``reconstruction_margin``, the allowed relative increase of the
            MSE (0.05 = 5% worse), and ``auroc_margin``, the allowed absolute decrease of the
            AUROC.
        identical_champion: the champion's version when training reproduced its very bundle
            (nothing to compare or promote: it stays the champion).

    Returns:
        The decision, not applied yet (:func:`apply_gate` applies it).
    """
    reconstruction_margin, auroc_margin = evaluation.reconstruction_margin, evaluation.auroc_margin
    result: dict[str, Any] = {
        "decision": "promote",
        "reasons": [],
        "comparisons": [],
        "champion_version": champion.version if champion else None,
        "reconstruction_margin": float(reconstruction_margin),
        "auroc_margin": float(auroc_margin),
    }
    if identical_champion is not None:
        result["champion_version"] = identical_champion
        result["reasons"].append(
            f"identical to the champion {identical_champion}: the same data, config and seed "
            "reproduced its bundle, so it stays the champion (nothing new was registered)"
        )
        return GateDecision.from_dict(result)
    if champion is None:
        result["reasons"].append("no champion yet: the first model becomes the champion")
        return GateDecision.from_dict(result)
    if champion.error:
        result["reasons"].append(
            f"the champion {champion.version} cannot score this holdout "
            f"({champion.error}), so it cannot score new batches either"
        )
        return GateDecision.from_dict(result)

    champion_metrics = champion.to_dict()
    challenger_mse = _reconstruction_mse(challenger)
    champion_mse = _reconstruction_mse(champion_metrics)
    if challenger_mse is None or champion_mse is None:
        result["decision"] = "refuse"
        result["reasons"].append(
            "the holdout reconstruction MSE is missing for "
            f"{'the challenger' if challenger_mse is None else 'the champion'}; "
            "the gate cannot compare the models"
        )
    else:
        limit = champion_mse * (1.0 + reconstruction_margin)
        passed = challenger_mse <= limit
        change = challenger_mse / champion_mse - 1.0 if champion_mse > 0 else 0.0
        if not passed:
            verdict = f"worse than the champion by more than the {reconstruction_margin:.0%} margin"
        elif challenger_mse <= champion_mse:
            verdict = "better than (or as good as) the champion"
        else:
            verdict = f"slightly worse, within the {reconstruction_margin:.0%} margin"
        _record_comparison(
            result,
            _comparison(
                "reconstruction_mse",
                challenger_mse,
                champion_mse,
                reconstruction_margin,
                limit,
                passed,
            ),
            f"holdout reconstruction MSE {challenger_mse:.4f} vs champion {champion_mse:.4f} "
            f"({change:+.1%}): {verdict} (limit {limit:.4f})",
        )

    challenger_auroc, champion_auroc = _auroc(challenger), _auroc(champion_metrics)
    if challenger_auroc is not None and champion_auroc is not None:
        limit = champion_auroc - auroc_margin
        passed = challenger_auroc >= limit
        if not passed:
            verdict = f"below the champion's by more than the {auroc_margin:g} margin"
        elif challenger_auroc >= champion_auroc:
            verdict = "better than (or as good as) the champion"
        else:
            verdict = f"slightly lower, within the {auroc_margin:g} margin"
        _record_comparison(
            result,
            _comparison("auroc", challenger_auroc, champion_auroc, auroc_margin, limit, passed),
            f"holdout AUROC {challenger_auroc:.4f} vs champion {champion_auroc:.4f} "
            f"({challenger_auroc - champion_auroc:+.4f}): {verdict} (limit {limit:.4f})",
        )
    elif challenger.get("labels") is not None or champion.labels is not None:
        result["reasons"].append(
            "AUROC not compared: the holdout has only one class (or no labels)"
        )
    return GateDecision.from_dict(result)


def _comparison(
    metric: str, challenger: float, champion: float, margin: float, limit: float, passed: bool
) -> dict[str, Any]:
    return {
        "metric": metric,
        "challenger": challenger,
        "champion": champion,
        "margin": float(margin),
        "limit": limit,
        "passed": bool(passed),
    }


def apply_gate(
    *,
    version: str,
    decision: GateDecision,
    promote: bool = True,
    evaluation: dict[str, Any] | None = None,
    storage: Storage,
) -> GateDecision:
    """Carry out a :func:`gate_decision` for a registered challenger ``version``.

    ``promote=False`` records the decision without changing the champion (a dry run). When the
    champion changed since it was evaluated (another training run promoted a model meanwhile), the
    challenger is refused: it was never compared with the current champion.

    The challenger's registry entry gets ``gate`` (the decision, whether it was applied, the
    champion before and after) and ``evaluation`` (headline holdout metrics and the run's context
    when given); champion.json's history gets a ``promote`` or ``refuse`` event with the reasons.
    Returns the decision as applied.
    """
    registry = storage.registry()
    current = registry.champion()
    reasons = list(decision.reasons)
    verdict = decision.decision
    if verdict == "promote" and current != decision.champion_version:
        verdict = "refuse"
        reasons.append(
            f"the champion changed from {decision.champion_version} to {current} during "
            "evaluation; train again to compare with the current champion"
        )
    reason = "promotion gate: " + "; ".join(reasons)
    details = {"comparisons": decision.comparisons}
    applied = bool(promote)
    if not promote or (verdict == "promote" and current == version):
        after = current  # a dry run, or the champion itself: no event to record
    elif verdict == "promote":
        after = registry.promote(version, reason, details)["version"]
    else:
        after = registry.refuse(version, reason, details)["version"]
    record = decision.replace(
        decision=verdict,
        reasons=reasons,
        applied=applied,
        champion_before=current,
        champion_after=after,
        promoted=applied and after == version and current != version,
    )
    fields: dict[str, Any] = {"gate": record.to_dict()}
    if evaluation is not None:
        fields["evaluation"] = evaluation
    registry.update_entry(version, **fields)
    return record


@task(name="promotion-gate", cache_policy=NO_CACHE)
def gate_task(
    *,
    evaluation: Evaluation,
    champion: ChampionEvaluation | None,
    settings: EvaluationSettings,
    promote: bool,
    context: dict[str, Any],
    identical_champion: str | None = None,
    storage: Storage,
) -> GateDecision:
    """Decide (:func:`gate_decision`) and apply (:func:`apply_gate`) the promotion of the
    challenger ``evaluation`` measured; ``context`` (the run, the retraining trigger) is recorded
    with its headline metrics in the registry entry. A promotion or a refusal is announced as a
    Prefect event (tasks.events) once the registry records it."""
    decision = gate_decision(
        evaluation.metrics,
        champion,
        evaluation=settings,
        identical_champion=identical_champion,
    )
    applied = apply_gate(
        version=evaluation.version,
        decision=decision,
        promote=promote,
        evaluation={**evaluation.headline, **context},
        storage=storage,
    )
    emit(model_gated(storage.dataset, evaluation.version, applied, context))
    return applied
