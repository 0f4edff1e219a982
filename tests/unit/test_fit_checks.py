"""Warnings for a flag rate of 0 or far from its target, and for a fit stopped at its cap."""

from __future__ import annotations

from tasks.fit_checks import (
    calibration_text,
    flag_rate_warning,
    target_flag_rate,
    training_warnings,
)
from tasks.records import SCORED, ScoreMarker
from tasks.report.run_summary import RunBatches, summarize_score_run
from tasks.settings import ThresholdSettings

FPR_1 = ThresholdSettings(method="fpr", value=0.01)


def test_targets_of_the_threshold_rules():
    assert target_flag_rate("fpr", 0.01) == 0.01
    assert target_flag_rate("contamination", 0.05) == 0.05
    assert abs(target_flag_rate("quantile", 0.99) - 0.01) < 1e-12
    assert target_flag_rate("mean_std", 3) is None and target_flag_rate("fixed", 2.0) is None


def test_zero_flags_where_some_were_expected_is_a_warning():
    warning = flag_rate_warning(0, 1400, "fpr", 0.01, "the scored rows")
    assert warning.startswith("no row of the scored rows was flagged: 0 of 1400")
    assert "about 14" in warning and "calibrat" in warning
    assert flag_rate_warning(0, 100, "fpr", 0.01, "x") is None  # 1 expected: noise
    assert flag_rate_warning(0, 5000, "mean_std", 3, "x").startswith("no row of x")
    assert flag_rate_warning(0, 500, "mean_std", 3, "x") is None


def test_a_rate_far_from_its_target_is_a_warning():
    assert "4x the fpr target of 1.00%" in flag_rate_warning(40, 1000, "fpr", 0.01, "batch b")
    assert "0.25x" in flag_rate_warning(10, 4000, "fpr", 0.01, "batch b")
    assert flag_rate_warning(15, 1000, "fpr", 0.01, "batch b") is None  # 1.5x: fine
    assert flag_rate_warning(5, 200, "fpr", 0.01, "batch b") is None  # 2 expected: noise


def test_a_fit_at_its_epoch_cap_still_improving_is_a_warning():
    improving = {"epochs_run": 10, "best_epoch": 10}
    [warning] = training_warnings(improving, 10, None)
    assert "epoch cap (10) while still improving" in warning and "model.epochs" in warning
    assert training_warnings({"epochs_run": 10, "best_epoch": 7}, 10, None) == []
    assert training_warnings({"epochs_run": 6, "best_epoch": 6}, 10, None) == []  # stopped early
    fallback = {"note": "only 80 validation rows: ...", "rows": 800, "source": "fit",
                "validation_rows": 80}  # fmt: skip
    assert training_warnings({}, None, fallback) == [
        "threshold calibration: only 80 validation rows: ..."
    ]
    assert calibration_text(fallback) == (
        "800 training and validation rows (fallback: only 80 validation rows)"
    )
    assert calibration_text({"rows": 500, "source": "validation", "note": None}) == (
        "500 validation rows"
    )


def marker(batch_id: str, rows: int, flagged: int) -> ScoreMarker:
    return ScoreMarker(
        batch_id, SCORED, rows_in=rows, rows_out=rows, flagged=flagged, model_version="v1"
    )


def test_the_run_summary_warns_per_batch_and_for_the_run():
    scored = [marker("a", 700, 0), marker("b", 700, 0)]
    summary = summarize_score_run("shop", "v1", RunBatches(scored=scored), threshold=FPR_1)
    assert [w.split(":")[0] for w in summary["flag_warnings"]] == [
        "no row of batch a was flagged",
        "no row of batch b was flagged",
        "no row of this run's scored rows was flagged",
    ]
    fine = [marker("a", 1000, 11)]
    assert (
        summarize_score_run("shop", "v1", RunBatches(scored=fine), threshold=FPR_1)["flag_warnings"]
        == []
    )


def test_the_source_of_a_label_threshold_is_named():
    chosen = {"rows": 120, "source": "feedback", "method": "target_precision", "note": None}
    assert calibration_text(chosen) == "120 analysts' verdicts (target_precision)"
    fallback = {
        "rows": 80, "source": "validation", "method": "max_f1", "validation_rows": 80,
        "note": "max_f1 not used: ...", "fallback": {"method": "fpr", "value": 0.01},
    }  # fmt: skip
    assert calibration_text(fallback) == (
        "80 validation rows with the fpr 0.01 fallback: max_f1 had too few labels"
    )
