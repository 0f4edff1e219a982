"""Explanations point at the cause: the changed column first, with the direction of its deviation,
and no column type (skewed amounts, many binary flags, a many-level categorical) drowning the rest."""

import numpy as np
import pandas as pd
import pytest

from models import AutoencoderDetector
from models.explanations import top_feature_strings

FAST = {"epochs": 20, "device": "cpu", "random_state": 0}
N_FLAGS = 12


def failure_mode_frame(n_rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Correlated skewed amounts, a symmetric value, many rare 0/1 flags and a 10-level category."""
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=n_rows)
    frame = {
        "amount": np.exp(2.0 + 0.8 * factor + 0.3 * rng.normal(size=n_rows)),
        "fee": np.exp(0.5 + 0.8 * factor + 0.3 * rng.normal(size=n_rows)),
        "height": 170 + 10 * factor + 3 * rng.normal(size=n_rows),
    }
    for j in range(N_FLAGS):
        frame[f"flag{j}"] = (rng.random(n_rows) < 0.03 + 0.01 * j).astype(np.int64)
    frame["region"] = rng.choice([f"r{i}" for i in range(10)], size=n_rows)
    return pd.DataFrame(frame)


@pytest.fixture(scope="module")
def fitted() -> tuple[AutoencoderDetector, pd.DataFrame]:
    frame = failure_mode_frame()
    return AutoencoderDetector(**FAST).fit(frame.iloc[:2500]), frame.iloc[2500:].reset_index(
        drop=True
    )


def test_a_many_level_category_does_not_explain_ordinary_rows(fitted):
    detector, test = fitted
    first = detector.explain(test, top_k=1, details=True)["column"]
    # Its raw cross-entropy is about 2.3 nats on every row, more than any other column's error:
    # in nats of excess surprise it is named first no more often than its share of the columns.
    assert (first == "region").mean() < 0.15


@pytest.mark.parametrize(("column", "sign", "direction"), [("height", 1, "above"), ("fee", -1, "below")])  # fmt: skip
def test_a_moved_value_is_named_first_with_its_direction(fitted, column, sign, direction):
    detector, test = fitted
    rows = test.iloc[:100].copy()
    values = detector_values = rows[column].to_numpy(dtype=float)
    if column == "fee":  # skewed: move it 8 robust deviations of its logarithm
        detector_values = np.exp(np.log(values) + sign * 8 * 0.85)
    else:
        detector_values = values + sign * 8 * 10.4
    rows[column] = detector_values
    details = detector.explain(rows, top_k=3, details=True)
    first = details[details["rank"] == 1]
    assert (first["column"] == column).mean() >= 0.9
    named = first[first["column"] == column]
    assert (named["direction"] == direction).all()
    expected = named["expected"].astype(float).to_numpy()
    observed = named["observed"].astype(float).to_numpy()
    assert np.all(observed > expected) if direction == "above" else np.all(observed < expected)


def test_a_rare_level_and_a_set_rare_flag_are_named_first(fitted):
    detector, test = fitted
    rows = test.iloc[:100].copy()
    rows["region"] = "r_never_seen"
    details = detector.explain(rows, top_k=1, details=True)
    assert (details["column"] == "region").mean() >= 0.9
    assert set(details.loc[details["column"] == "region", "direction"]) == {"unexpected level"}
    flags = test.iloc[:100].copy()
    quiet = flags[[f"flag{j}" for j in range(N_FLAGS)]].sum(axis=1) == 0
    flags = flags.loc[quiet].copy()
    flags["flag0"] = 1  # the rarest flag (3% of rows) set on rows with no other flag
    named = detector.explain(flags, top_k=3, details=True)
    assert (named.groupby("row")["column"].apply(lambda c: "flag0" in set(c))).mean() >= 0.9


def zero_inflated_frame(n_rows: int = 4000, seed: int = 1) -> pd.DataFrame:
    """``visits``: 0 on about 90% of rows, an unpredictable heavy-tailed count on the rest (like
    bank's days since the last contact); ``height`` and ``weight`` move together; ``age`` is
    uniform between 20 and 70."""
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=n_rows)
    visited = rng.random(n_rows) < 0.1
    return pd.DataFrame(
        {
            "visits": np.where(visited, np.round(np.exp(rng.normal(3.0, 1.0, n_rows))), 0.0),
            "height": 170 + 10 * factor + 3 * rng.normal(size=n_rows),
            "weight": 70 + 8 * factor + 3 * rng.normal(size=n_rows),
            "age": rng.uniform(20, 70, size=n_rows),
        }
    )


@pytest.fixture(scope="module")
def zero_inflated():
    frame = zero_inflated_frame()
    train, test = frame.iloc[:3000], frame.iloc[3000:].reset_index(drop=True)
    # Rows that visited: their natural count costs many nats, like every visiting row's.
    rows = test[test["visits"] > 0].copy().reset_index(drop=True)
    rows["age"] += 3 * 18.5  # the cause: 3 robust deviations up, past every training age
    ranked = AutoencoderDetector(**FAST).fit(train)
    # A floor above every column's usual high contribution divides every column alike: the
    # ranking by contribution alone, as before explanation_quantile.
    by_contribution = AutoencoderDetector(**FAST, explanation_floor=1e9).fit(train)
    return ranked, by_contribution, rows


def test_a_column_often_far_from_its_mode_does_not_outrank_the_cause(zero_inflated):
    ranked, by_contribution, rows = zero_inflated
    first = ranked.explain(rows, top_k=1, details=True)["column"]
    assert (first == "age").mean() >= 0.9
    # Ranked by contribution alone, the visiting rows' natural counts (hundreds of nats: the
    # network cannot guess them) take the first place in a fifth of the rows.
    plain_first = by_contribution.explain(rows, top_k=1, details=True)["column"]
    assert (plain_first == "visits").mean() >= 0.15


def test_the_explanation_ranking_changes_no_score_or_contribution(zero_inflated):
    ranked, by_contribution, rows = zero_inflated
    np.testing.assert_array_equal(
        ranked.explain(rows, top_k=None).to_numpy(),
        by_contribution.explain(rows, top_k=None).to_numpy(),
    )
    np.testing.assert_array_equal(
        ranked.decision_function(rows), by_contribution.decision_function(rows)
    )
    scale = ranked.column_scorer_.rank_scale
    assert scale.shape == (4,) and (scale >= ranked.explanation_floor).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"explanation_quantile": 0.0}, "explanation_quantile must be in"),
        ({"explanation_quantile": 1.5}, "explanation_quantile must be in"),
        ({"explanation_floor": 0.0}, "explanation_floor must be > 0"),
    ],
)
def test_explanation_ranking_parameters_are_checked(params, message):
    with pytest.raises(ValueError, match=message):
        AutoencoderDetector(**FAST, **params).fit(zero_inflated_frame(100))


@pytest.mark.parametrize("top_k", [1, 3, 8, 9, 40])
def test_top_indices_is_the_stable_order_of_the_largest_for_every_path(top_k):
    from models.explanations import top_indices

    rng = np.random.default_rng(0)
    contributions = rng.exponential(size=(500, 12)).astype(np.float32)
    contributions[rng.random(contributions.shape) < 0.5] = 0.0  # many ties at 0
    contributions[:20, :6] = 1.5  # ties above 0
    contributions[20:40] = 0.0
    # Largest first, equal values in column order: a stable sort of the negated values.
    expected = np.argsort(-contributions, axis=1, kind="stable")[:, :top_k]
    np.testing.assert_array_equal(top_indices(contributions, top_k), expected)
    # -infinity (and float64) take the partition path: the same order.
    with_minus_infinity = contributions.astype(np.float64)
    with_minus_infinity[40:60, 3] = -np.inf
    expected = np.argsort(-with_minus_infinity, axis=1, kind="stable")[:, :top_k]
    np.testing.assert_array_equal(top_indices(with_minus_infinity, top_k), expected)
    assert top_indices(contributions[:0], top_k).shape == (0, min(top_k, 12))


def test_top_feature_strings_leave_out_the_columns_that_add_nothing():
    names = ["amount", "fee", "channel"]
    top = np.array([[2, 0, 1], [1, 2, 0], [0, 1, 2], [2, 1, 0]])
    contributions = np.array(
        [[3.0, 0.0, 9.0], [0.0, 0.0, 0.0], [5.0, 1.0, 0.5], [0.0, 0.0, 2.0]], dtype=np.float32
    )
    assert top_feature_strings(top, names) == [
        "channel,amount,fee", "fee,channel,amount", "amount,fee,channel", "channel,fee,amount",
    ]  # fmt: skip
    # A row with nothing unusual names no column; the others name only what adds to the score.
    assert top_feature_strings(top, names, contributions) == [
        "channel,amount", "", "amount,fee,channel", "channel",
    ]  # fmt: skip
