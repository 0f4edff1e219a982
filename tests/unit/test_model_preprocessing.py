"""Column resolution, frame normalisation and the fitted preprocessing layout."""

import numpy as np
import pandas as pd
import pytest

from models.preprocessing import (
    MISSING_LEVEL,
    PreprocessingSettings,
    as_frame,
    binary_columns,
    build_preprocessor,
    check_columns_present,
    describe_layout,
    fit_preprocessor,
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
        PreprocessingSettings(
            scaling=scaling,
            numeric_imputation="median",
            add_missing_indicators=True,
            min_frequency=2,
            max_categories=None,
            random_state=0,
        ),
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


def test_binary_columns_are_the_two_valued_numeric_ones():
    data = normalise_frame(frame(), ["amount", "count", "flag"], [])
    assert binary_columns(data, ["amount", "count", "flag"]) == ["flag"]
    data.loc[0, "flag"] = np.nan  # a missing value is not a third value
    assert binary_columns(data, ["flag"]) == ["flag"]


def test_flags_become_two_level_blocks_with_missing_and_unseen_values():
    rng = np.random.default_rng(0)
    source = pd.DataFrame(
        {"x": rng.normal(size=200), "flag": (rng.random(200) < 0.1).astype(int), "c": "a"}
    )
    source.loc[:2, "flag"] = np.nan
    data = normalise_frame(source, ["x", "flag"], ["c"])
    preprocessor = fit_preprocessor(
        data, ["x", "flag"], ["c"], PreprocessingSettings(
            scaling="standard", numeric_imputation="median", add_missing_indicators=True,
            min_frequency=None, max_categories=None, random_state=0, binary=["flag"],
        ),
    )  # fmt: skip
    layout = describe_layout(preprocessor, ["x", "flag"], ["c"])
    # x is the only scaled value (no indicator: x has no missing value); flag is a block of its
    # two values plus the missing level, before the categorical block.
    assert layout.value_columns == (0,) and layout.n_regression == 1
    assert layout.categorical_blocks == ((1, 4, 1), (4, 5, 2))
    assert layout.levels[0] == ("0", "1", MISSING_LEVEL)
    assert layout.binary_values == ((0.0, 1.0),)
    rows = normalise_frame(
        pd.DataFrame({"x": [0.0, 0.0, 0.0], "flag": [1.0, np.nan, 7.0], "c": "a"}),
        ["x", "flag"],
        ["c"],
    )
    out = preprocessor.transform(rows)
    np.testing.assert_array_equal(out[:, 1:4], [[0, 1, 0], [0, 0, 1], [0, 0, 0]])


def test_auto_scaling_reshapes_only_columns_whose_bulk_is_skewed():
    rng = np.random.default_rng(1)
    source = pd.DataFrame(
        {
            "amount": np.exp(rng.normal(3, 1, 2000)),  # log-normal: skewness far above 1
            "height": rng.normal(170, 10, 2000),  # symmetric
            "rare": np.where(rng.random(2000) < 0.1, rng.normal(5, 1, 2000), 0.0),  # a spike + tail
        }
    )
    data = normalise_frame(source, list(source), [])
    preprocessor = fit_preprocessor(
        data, list(source), [], PreprocessingSettings(
            scaling="auto", numeric_imputation="median", add_missing_indicators=True,
            min_frequency=None, max_categories=None, random_state=0,
        ),
    )  # fmt: skip
    named = {name: list(columns) for name, _, columns in preprocessor.transformers_}
    # Only the log-normal amount is reshaped: the spike keeps its distances (reshaping it would
    # pull its rare large values in).
    assert named["numeric"] == ["height", "rare"] and named["skewed"] == ["amount"]
    shape = preprocessor.named_transformers_["skewed"].named_steps["shape"]
    assert 0.0 <= shape.lambdas_[0] < 1.0
    out = preprocessor.transform(data)
    # The reshaped amount (last: plain values first) is close to symmetric; every value column is
    # standard-scaled.
    centred = out[:, 2] - out[:, 2].mean()
    assert abs((centred**3).mean() / centred.std() ** 3) < 0.3
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-9)
    layout = describe_layout(preprocessor, list(source), [])
    assert [layout.columns[i] for i in layout.value_columns] == ["height", "rare", "amount"]


def test_categorical_values_get_the_text_a_parquet_batch_gives_them():
    # A model trained by `aeflow train` learns the levels of batches read through Arrow
    # (tasks.frames.feature_frame: True -> 'true', 1.0 -> '1'); the same values in a pandas frame
    # (the detector in a notebook) must meet those levels, not fall on unseen ones ('True', '1.0').
    import pyarrow as pa

    from models.fast_preprocessing import FastPreprocessor
    from tasks.frames import feature_frame

    source = pd.DataFrame(
        {
            "flag": [True, False, None, True],
            "code": [1.0, 2.5, np.nan, 1.0],
            "count": pd.array([1, None, 3, 1], dtype="Int64"),
            "bools": pd.array([True, None, False, False], dtype="boolean"),
            "tier": pd.Categorical([1.0, 2.0, None, 1.0]),
        }
    )
    columns = list(source.columns)
    from_batch = feature_frame(pa.Table.from_pandas(source, preserve_index=False), [], columns)
    expected = normalise_frame(from_batch, [], columns)
    assert expected["flag"].tolist() == ["true", "false", MISSING_LEVEL, "true"]
    pd.testing.assert_frame_equal(normalise_frame(source, [], columns), expected)
    preprocessor = fit_preprocessor(
        expected, [], columns, PreprocessingSettings(
            scaling="standard", numeric_imputation="median", add_missing_indicators=True,
            min_frequency=None, max_categories=None, random_state=0,
        ),
    )  # fmt: skip
    fast = FastPreprocessor.from_fitted(preprocessor, [], columns)
    np.testing.assert_array_equal(
        fast.transform(source), preprocessor.transform(expected).astype(np.float32)
    )
