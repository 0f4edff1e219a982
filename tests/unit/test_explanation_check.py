"""The planted-anomaly check: one column changed per row, by the stated rule, and scored right."""

import numpy as np
import pandas as pd
import pytest

from tasks.explanation_check import (
    ROBUST_SHIFT,
    check,
    plant,
    plantable_columns,
    robust_std,
    typical_rows,
)


def _train(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(100, 15, n),
            "constant": 1.0,
            "kind": rng.choice(["a", "b"], size=n, p=[0.99, 0.01]),  # a rare level: plantable
            "even": rng.choice(["x", "y"], size=n),  # no rare level: not plantable
        }
    )


def test_only_varying_numerics_and_categoricals_with_a_rare_level_are_planted():
    train = _train()
    assert plantable_columns(train, ["amount", "constant"], ["kind", "even"]) == ["amount", "kind"]


def test_each_planted_row_differs_in_exactly_its_column_by_the_rule():
    train = _train()
    rows = _train(200, seed=1)
    planting = plant(train, rows, ["amount", "constant"], ["kind", "even"], seed=3, max_rows=150)
    assert len(planting.rows) == 150 and set(planting.column) == {"amount", "kind"}
    source = rows.iloc[np.sort(np.random.default_rng(3).choice(200, 150, replace=False))]
    source = source.reset_index(drop=True)
    changed = planting.rows.ne(source)
    assert (changed.sum(axis=1) == 1).all()
    numeric = planting.column == "amount"
    shift = planting.rows.loc[numeric, "amount"] - source.loc[numeric, "amount"]
    spread = robust_std(train["amount"].to_numpy())
    np.testing.assert_allclose(np.abs(shift), ROBUST_SHIFT * spread)
    up = np.sign(shift.to_numpy()) > 0
    assert (planting.direction[numeric][up] == "above").all()
    assert (planting.direction[numeric][~up] == "below").all()
    levels = planting.rows.loc[~numeric, "kind"]
    was = source.loc[~numeric, "kind"]
    assert ((levels == "b") | (was == "b")).all() and (levels != was).all()


class _Oracle:
    """Explains every row by a given column, with a given direction."""

    def __init__(self, answer: np.ndarray, direction: np.ndarray):
        self.answer, self.direction = answer, direction

    def explain(self, rows, top_k, details):
        assert details
        return pd.DataFrame(
            {
                "row": np.arange(len(rows)),
                "rank": 1,
                "column": self.answer,
                "direction": self.direction,
            }
        )


def test_check_counts_hits_and_directions():
    train = _train()
    planting = plant(train, _train(100, seed=2), ["amount"], ["kind"], seed=0)
    right = _Oracle(planting.column, planting.direction)
    result = check(right, planting, top_k=1)
    assert result["top1"] == 1.0 and result["direction"] == 1.0
    wrong_column = np.where(planting.column == "amount", "kind", "amount")
    flipped = np.where(planting.direction == "above", "below", "above")
    result = check(_Oracle(wrong_column, flipped), planting, top_k=1)
    assert result["top1"] == 0.0 and result["direction"] == 0.0
    assert result["by_kind"]["numeric"]["rows"] == (planting.kind == "numeric").sum()


def test_a_row_is_typical_only_when_every_value_is_in_the_training_bulk():
    train = _train()
    train.loc[:49, "amount"] = np.nan  # 5% missing: a missing amount is common, so typical
    rows = pd.DataFrame(
        {
            "amount": [100.0, 100.0, 100.0 + 10 * 15, np.nan, 100.0],
            "constant": 1.0,
            "kind": ["a", "b", "a", "a", "unseen"],
            "even": "x",
        }
    )
    typical = typical_rows(train, rows, ["amount", "constant"], ["kind", "even"])
    # a 1% level, a value 10 standard deviations out and a level never seen are not typical
    assert typical.tolist() == [True, False, False, True, False]
    assert typical_rows(train.fillna(100.0), rows, ["amount"], [])[3] == np.False_


def test_check_reports_the_rows_typical_before_planting_apart():
    train = _train()
    rows = _train(200, seed=4)
    rows["kind"] = "a"
    rows["amount"] = np.where(rows.index < 100, 1000.0, 100.0)  # half unusual before planting
    planting = plant(train, rows, ["amount"], ["kind"], seed=0, max_rows=200)
    assert planting.typical.sum() == 100
    # An explainer that is right only on the rows that were typical before the planting.
    answer = np.where(planting.typical, planting.column, "other")
    result = check(_Oracle(answer, planting.direction), planting, top_k=1)
    assert result["top1"] == 0.5
    assert result["typical"]["rows"] == 100 and result["typical"]["top1"] == 1.0
    assert set(result["typical"]["by_kind"]) <= {"numeric", "categorical"}


def test_nothing_to_plant_is_a_clear_error():
    train = _train()
    with pytest.raises(ValueError, match="no column can hold a planted anomaly"):
        plant(train, train, ["constant"], ["even"])
