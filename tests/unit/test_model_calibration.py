"""Threshold rules and percentile calibration."""

import numpy as np
import pytest

from models.calibration import (
    MAX_REFERENCE_POINTS,
    check_threshold,
    fit_threshold,
    percentile,
    reference_scores,
)

SCORES = np.arange(1, 1001, dtype=np.float64)  # 1..1000


def test_fpr_flags_at_most_the_target_share_of_validation_rows():
    threshold = fit_threshold("fpr", 0.01, SCORES, SCORES)
    assert 0.008 <= (threshold < SCORES).mean() <= 0.01


def test_other_rules():
    assert fit_threshold("quantile", 0.5, SCORES, SCORES) == 501.0
    assert fit_threshold("mean_std", 2.0, SCORES, SCORES) == pytest.approx(
        SCORES.mean() + 2 * SCORES.std()
    )
    fit_scores = np.concatenate([SCORES, np.full(1000, 5000.0)])
    # contamination uses every fit row: half are 5000, so flagging 10% needs a threshold of 5000.
    assert fit_threshold("contamination", 0.1, SCORES, fit_scores) == 5000.0
    assert fit_threshold("fixed", 3.5, SCORES, SCORES) == 3.5


@pytest.mark.parametrize(
    ("method", "value", "message"),
    [
        ("contamination", 0.7, r"must be in \(0, 0.5\], got 0.7"),
        ("fpr", 1.0, r"must be in \(0, 1\), got 1.0"),
        ("mean_std", -1, "must be >= 0, got -1"),
        ("fixed", float("nan"), "finite number"),
        ("top", 0.1, "threshold_method must be one of"),
    ],
)
def test_invalid_rules_name_the_rule_and_value(method, value, message):
    with pytest.raises(ValueError, match=message):
        check_threshold(method, value)


def test_percentile_is_the_share_at_or_below():
    reference = reference_scores(np.array([3.0, 1.0, 2.0, 4.0]))
    np.testing.assert_array_equal(reference, [1, 2, 3, 4])
    np.testing.assert_array_equal(
        percentile(reference, [0.5, 1.0, 2.5, 4.0, 9.0]), [0, 0.25, 0.5, 1, 1]
    )


def test_large_reference_is_summarised_by_quantiles():
    scores = np.random.default_rng(0).normal(size=50_000)
    reference = reference_scores(scores)
    assert reference.size == MAX_REFERENCE_POINTS
    probe = np.array([-1.0, 0.0, 1.0])
    exact = (scores[None, :] <= probe[:, None]).mean(axis=1)
    np.testing.assert_allclose(percentile(reference, probe), exact, atol=1e-3)
