"""Threshold rules and percentile calibration."""

import numpy as np
import pytest

from models.calibration import (
    MAX_REFERENCE_POINTS,
    calibrate,
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


def test_enough_validation_rows_calibrate_on_them_as_before():
    threshold, reference, record = calibrate("fpr", 0.01, SCORES, SCORES)
    assert threshold == fit_threshold("fpr", 0.01, SCORES, SCORES)
    assert reference is not None and record["source"] == "validation"
    assert (record["rows"], record["expected_tail_rows"], record["note"]) == (1000, 10.0, None)


def test_too_few_validation_rows_fall_back_to_every_fit_row():
    """80 validation rows cannot place a 1% threshold (it would be their top score and flag
    nothing); 800 fit rows can."""
    rng = np.random.default_rng(0)
    fit_scores = rng.lognormal(0, 1, 800)
    validation = fit_scores[:80]
    naive = fit_threshold("fpr", 0.01, validation, fit_scores)
    assert naive == validation.max()  # the old behaviour: nothing above it
    threshold, reference, record = calibrate("fpr", 0.01, validation, fit_scores)
    assert record["source"] == "fit" and record["rows"] == 800 and record["validation_rows"] == 80
    assert (
        "only 80 validation rows" in record["note"]
        and "800 training and validation" in record["note"]
    )
    assert 0.005 <= (fit_scores > threshold).mean() <= 0.01
    assert reference.size == 800  # percentiles against the same rows


def test_too_few_fit_rows_use_a_fitted_log_normal_tail():
    rng = np.random.default_rng(1)
    fit_scores = rng.lognormal(0, 0.5, 200)
    threshold, _, record = calibrate("fpr", 0.01, fit_scores[:20], fit_scores)
    assert record["source"] == "log-normal" and "log-normal fitted" in record["note"]
    population = rng.lognormal(0, 0.5, 200_000)
    assert 0.003 <= (population > threshold).mean() <= 0.03
    # scores that are not all positive: a normal tail
    _, _, record = calibrate("fpr", 0.01, fit_scores[:20] - 2, fit_scores - 2)
    assert record["source"] == "normal"


def test_other_methods_record_what_they_stood_on():
    assert calibrate("fixed", 3.5, SCORES, SCORES)[2]["source"] == "fixed"
    small = SCORES[:10]
    threshold, _, record = calibrate("mean_std", 2.0, small, SCORES)
    assert record["source"] == "fit" and threshold == pytest.approx(
        SCORES.mean() + 2 * SCORES.std()
    )
    assert calibrate("contamination", 0.1, SCORES, SCORES)[2]["source"] == "fit"
    assert calibrate("quantile", 0.99, SCORES, SCORES)[2]["expected_tail_rows"] == pytest.approx(10)


def test_a_small_table_still_flags_rows_and_says_how(tmp_path):
    from models import AutoencoderDetector

    rng = np.random.default_rng(2)
    frame = {"a": rng.normal(0, 1, 800), "b": rng.normal(5, 2, 800)}
    import pandas as pd

    detector = AutoencoderDetector(
        hidden_sizes=(8,), latent_dim=2, epochs=3, threshold_value=0.01, random_state=0
    ).fit(pd.DataFrame(frame))
    record = detector.metadata_["calibration"]
    assert record["validation_rows"] == 80 and record["source"] == "fit"
    assert detector.predict(pd.DataFrame(frame)).sum() > 0
    detector.save(tmp_path / "bundle")
    assert AutoencoderDetector.load(tmp_path / "bundle").metadata_["calibration"] == record
