"""Warnings a person needs after training and scoring, in one line each.

A threshold calibrated on too few rows can flag nothing (or far too much) without any error, and a
model can stop at its epoch cap while it was still getting better. These functions turn the
numbers a run already has (flag counts, the threshold rule, the training history, the
calibration record) into readable warnings for the run summary and the evaluation report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A flag rate this many times its target (or this many times smaller) is reported.
FLAG_RATE_FACTOR = 3.0
# Flags expected at the target rate below which an observed rate is noise, not a finding.
MIN_EXPECTED_FLAGS = 10
# Without a target rate (mean_std, fixed), no flag at all in this many rows is reported.
MIN_ROWS_WITHOUT_TARGET = 1000


def target_flag_rate(method: str | None, value: float | None) -> float | None:
    """The share of rows a threshold rule aims to flag, when it has one (fpr, contamination,
    quantile)."""
    if method in ("fpr", "contamination") and value is not None:
        return float(value)
    if method == "quantile" and value is not None:
        return 1.0 - float(value)
    return None


def flag_rate_warning(
    flagged: int, rows: int, method: str | None, value: float | None, where: str
) -> str | None:
    """A warning when ``flagged`` of ``rows`` is 0 or far from the rule's target, else None.

    ``where`` names the rows ("the scored rows", "the holdout"). Zero flags are reported once about
    3 were expected; a rate off by more than :data:`FLAG_RATE_FACTOR` once
    :data:`MIN_EXPECTED_FLAGS` were expected (fewer is noise).
    """
    if rows <= 0:
        return None
    target = target_flag_rate(method, value)
    rate = flagged / rows
    fix = (
        "the threshold was calibrated on too few rows or the data moved; see the model's "
        "calibration (aeflow models show) and consider retraining on more rows"
    )
    if target is None:
        if flagged == 0 and rows >= MIN_ROWS_WITHOUT_TARGET:
            return f"no row of {where} was flagged ({rows} rows, threshold method {method})"
        return None
    expected = target * rows
    if flagged == 0 and expected >= 3:
        return (
            f"no row of {where} was flagged: 0 of {rows}, where the {method} target of "
            f"{target:.2%} means about {expected:.0f}; {fix}"
        )
    if flagged and expected >= MIN_EXPECTED_FLAGS:
        ratio = rate / target
        if ratio >= FLAG_RATE_FACTOR or ratio <= 1 / FLAG_RATE_FACTOR:
            return (
                f"{where} flag rate {rate:.2%} ({flagged} of {rows}) is {ratio:.2g}x the "
                f"{method} target of {target:.2%}; {fix}"
            )
    return None


def training_warnings(
    history: Mapping[str, Any], epochs: int | None, calibration: Mapping[str, Any] | None
) -> list[str]:
    """Warnings about a fit: stopped at the epoch cap still improving, and a calibration that
    fell back because the validation rows were too few (see models.calibration.calibrate)."""
    warnings = []
    epochs_run = int(history.get("epochs_run") or len(history.get("train_loss") or []))
    best = int(history.get("best_epoch") or 0)
    if epochs and epochs_run >= epochs and best >= epochs_run:
        warnings.append(
            f"training stopped at its epoch cap ({epochs}) while still improving (the best "
            f"validation loss was at the last epoch): raise model.epochs"
        )
    if calibration and calibration.get("note"):
        warnings.append(f"threshold calibration: {calibration['note']}")
    return warnings


def calibration_text(calibration: Mapping[str, Any] | None) -> str:
    """Where a threshold came from, e.g. '80 validation rows' or '800 training and validation rows
    (fallback: only 80 validation rows)'."""
    if not calibration:
        return "validation rows (not recorded)"
    rows, source = calibration["rows"], calibration["source"]
    method = calibration.get("method")
    text = {
        "validation": f"{rows} validation rows",
        "fit": f"{rows} training and validation rows",
        "fixed": "a fixed value",
        "labels": f"{rows} labelled validation rows ({method})",
        "feedback": f"{rows} analysts' verdicts ({method})",
    }.get(source, f"a {source} tail fitted to {rows} training and validation rows")
    fallback = calibration.get("fallback")
    if fallback:
        text += (
            f" with the {fallback['method']} {fallback['value']} fallback: "
            f"{method} had too few labels"
        )
    elif calibration.get("note") and source not in ("labels", "feedback"):
        text += f" (fallback: only {calibration['validation_rows']} validation rows)"
    return text
