"""Column resolution, frame normalisation and the fitted preprocessing layout."""

import numpy as np
import pandas as pd
import pytest

from models.preprocessing import (
    MISSING_LEVEL,
    as_frame,
    build_preprocessor,
    check_columns_present,
    describe_layout,
    normalise_frame,
    resolve_columns,
)


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
            "count": [1, 2, 3, 4, 5, 6],
            "flag": [True, False, True, True, False, True],
            "city": ["a", "b", None, "a", "a", "c"],
            "tier": pd.Categorical(["x", "y", "x", None, "x", "y"]),
        }
    )


def test_detection_splits_numeric_and_categorical_in_frame_order():
    assert resolve_columns(frame(), None, None) == (
        ["amount", "count", "flag"],
        ["city", "tier"],
    )


def test_named_columns_are_used_exactly_and_validated():
    assert resolve_columns(frame(), ["count"], None) == (["count"], [])
    assert resolve_columns(frame(), None, ["tier", "city"]) == ([], ["tier", "city"])
    with pytest.raises(ValueError, match=r"both numeric and categorical, got \['city'\]"):
        resolve_columns(frame(), ["city"], ["city"])
    with pytest.raises(ValueError, match="must not repeat"):
        resolve_columns(frame(), ["count", "count"], None)
    with pytest.raises(ValueError, match="at least one column"):
        resolve_columns(frame(), [], [])


def test_missing_columns_are_listed():
    with pytest.raises(ValueError, match=r"missing 2 column\(s\).*\['x', 'y'\]"):
        check_columns_present(frame(), ["amount", "x", "y"])


def test_as_frame_names_numpy_columns_and_rejects_other_shapes():
    converted = as_frame(np.zeros((2, 3)))
    assert list(converted.columns) == ["x0", "x1", "x2"]
    with pytest.raises(TypeError, match="must be numeric"):
        as_frame(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="got a Series"):
        as_frame(frame()["amount"])


def test_normalise_frame_types_missing_levels_and_leaves_input_untouched():
    source = frame()
    source.loc[0, "amount"] = np.inf
    normalised = normalise_frame(source, ["amount", "count", "flag"], ["city", "tier"])
    assert list(normalised.columns) == ["amount", "count", "flag", "city", "tier"]
    assert (normalised.dtypes.iloc[:3] == np.float64).all()
    assert np.isnan(normalised.loc[0, "amount"]) and source.loc[0, "amount"] == np.inf
    assert normalised["city"].tolist() == ["a", "b", MISSING_LEVEL, "a", "a", "c"]
    assert normalised["tier"].tolist()[3] == MISSING_LEVEL


@pytest.mark.parametrize("scaling", ["standard", "robust", "quantile", "minmax", "none"])
def test_layout_maps_every_feature_to_its_column(scaling):
    data = normalise_frame(frame(), ["amount", "count"], ["city"])
    preprocessor = build_preprocessor(
        data,
        ["amount", "count"],
        ["city"],
        scaling=scaling,
        numeric_imputation="median",
        add_missing_indicators=True,
        min_frequency=2,
        max_categories=None,
        random_state=0,
    ).fit(data)
    layout = describe_layout(preprocessor, ["amount", "count"], ["city"])
    out = preprocessor.transform(data)
    # amount, count, amount's missing indicator, then city's levels: a, infrequent (b, c, missing).
    assert layout.regression_column == (0, 1, 0)
    assert layout.levels == (("a", "infrequent"),)
    assert layout.categorical_blocks == ((3, 5, 2),)
    assert out.shape == (6, layout.n_features) == (6, 5)
    np.testing.assert_array_equal(out[:, 2], [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(out[:, 3:].sum(axis=1), 1)
    unseen = normalise_frame(
        pd.DataFrame({"amount": [1.0], "count": [1], "city": ["zzz"]}),
        ["amount", "count"],
        ["city"],
    )
    np.testing.assert_array_equal(preprocessor.transform(unseen)[0, 3:], [0, 1])


def test_nullable_pandas_dtypes_are_normalised():
    source = pd.DataFrame(
        {
            "a": pd.array([1, None, 3], dtype="Int64"),
            "b": pd.array([True, None, False], dtype="boolean"),
            "d": pd.array(["x", None, "y"], dtype="string"),
        }
    )
    assert resolve_columns(source, None, None) == (["a", "b"], ["d"])
    normalised = normalise_frame(source, ["a", "b"], ["d"])
    np.testing.assert_array_equal(normalised["a"], [1.0, np.nan, 3.0])
    np.testing.assert_array_equal(normalised["b"], [1.0, np.nan, 0.0])
    assert normalised["d"].tolist() == ["x", MISSING_LEVEL, "y"]
