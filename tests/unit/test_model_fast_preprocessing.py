"""FastPreprocessor: the numpy replay of the fitted ColumnTransformer gives scikit-learn's matrix."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder

from models.fast_preprocessing import FastPreprocessor, yeojohnson
from models.preprocessing import (
    PreprocessingSettings,
    build_preprocessor,
    describe_layout,
    fit_preprocessor,
    normalise_frame,
)


def frame() -> pd.DataFrame:
    return pd.DataFrame({"amount": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0], "city": list("ab?aac")})


NUMERIC = ["amount", "count", "flag", "empty"]
CATEGORICAL = ["city", "tier", "code", "plan"]


def awkward_frame(n_rows: int, seed: int) -> pd.DataFrame:
    """Mixed columns with NaNs and infinities, an all-NaN column, rare levels (``city``), a
    pandas Categorical with missing values, integer-coded levels and a column without rare levels."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(50, 10, n_rows)
    amount[rng.random(n_rows) < 0.1] = np.nan
    amount[rng.random(n_rows) < 0.02] = np.inf
    city = rng.choice(["a", "b", "c", "d", "e", "f"], n_rows, p=[0.5, 0.3, 0.12, 0.05, 0.02, 0.01])
    city = np.where(rng.random(n_rows) < 0.05, None, city)
    tier = pd.Categorical(rng.choice(["x", "y", "z"], n_rows))
    tier[rng.random(n_rows) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "amount": amount,
            "count": rng.poisson(3, n_rows),
            "flag": rng.random(n_rows) < 0.3,
            "empty": np.full(n_rows, np.nan),
            "city": city,
            "tier": tier,
            "code": rng.integers(0, 4, n_rows),
            "plan": rng.choice(["basic", "pro"], n_rows),
        }
    )


def fitted_preprocessor(scaling: str, **options) -> ColumnTransformer:
    data = normalise_frame(awkward_frame(500, seed=0), NUMERIC, CATEGORICAL)
    settings = {
        "numeric_imputation": "median",
        "add_missing_indicators": True,
        "min_frequency": 10,
        "max_categories": None,
        **options,
    }
    return build_preprocessor(
        data,
        NUMERIC,
        CATEGORICAL,
        PreprocessingSettings(scaling=scaling, random_state=0, **settings),
    ).fit(data)


def scoring_frame() -> pd.DataFrame:
    """Rows from another seed plus unseen levels in every categorical column, a missing value
    where the fit data had none (``plan``) and an extreme value."""
    source = awkward_frame(300, seed=1)
    source.loc[0, "city"] = "never-seen"
    source.loc[1, "plan"] = "enterprise"
    source.loc[2, "plan"] = None
    source.loc[3, "code"] = 99
    source.loc[4, "amount"] = 1e12
    source.loc[5, "empty"] = 7.0
    source["tier"] = source["tier"].cat.add_categories(["w"])
    source.loc[6, "tier"] = "w"
    return source


def reference(preprocessor: ColumnTransformer, source: pd.DataFrame) -> np.ndarray:
    normalised = normalise_frame(source, NUMERIC, CATEGORICAL)
    return preprocessor.transform(normalised).astype(np.float32)


@pytest.mark.parametrize("scaling", ["standard", "robust", "quantile", "minmax", "none"])
@pytest.mark.parametrize("numeric_imputation", ["median", "mean"])
def test_fast_preprocessor_equals_the_column_transformer(scaling, numeric_imputation):
    preprocessor = fitted_preprocessor(scaling, numeric_imputation=numeric_imputation)
    fast = FastPreprocessor.from_fitted(preprocessor, NUMERIC, CATEGORICAL)
    assert fast is not None
    source = scoring_frame()
    expected = reference(preprocessor, source)
    # The replay repeats scikit-learn's arithmetic, so the match is exact, not approximate.
    np.testing.assert_array_equal(fast.transform(source), expected)
    # The same on already-normalised input (what fit passes) and on a string-typed frame.
    normalised = normalise_frame(source, NUMERIC, CATEGORICAL)
    np.testing.assert_array_equal(fast.transform(normalised), expected)
    clipped = fast.transform(source, clip=3.0)
    np.testing.assert_array_equal(clipped[:, :4], np.clip(expected[:, :4], -3.0, 3.0))
    np.testing.assert_array_equal(clipped[:, 4:], expected[:, 4:])


def test_fast_preprocessor_covers_rare_unseen_and_missing_levels():
    preprocessor = fitted_preprocessor("standard")
    fast = FastPreprocessor.from_fitted(preprocessor, NUMERIC, CATEGORICAL)
    layout = describe_layout(preprocessor, NUMERIC, CATEGORICAL)
    assert fast.n_features == layout.n_features
    out = fast.transform(scoring_frame())
    (city_start, city_stop, _), _, _, (plan_start, plan_stop, _) = layout.categorical_blocks
    city_levels = layout.levels[0]
    assert city_levels[-1] == "infrequent" and "f" not in city_levels  # f is rare at fit
    # An unseen city joins the rare group; an unseen plan (no rare group) is an all-zero block.
    assert out[0, city_start:city_stop].tolist() == [0.0] * (len(city_levels) - 1) + [1.0]
    np.testing.assert_array_equal(out[1, plan_start:plan_stop], 0.0)
    np.testing.assert_array_equal(out[2, plan_start:plan_stop], 0.0)
    # Other rows hold exactly one 1 per block; unseen tier "w" and code 99 have no rare group.
    unseen_rows = {"city": [], "tier": [6], "code": [3], "plan": [1, 2]}
    for name, (start, stop, _) in zip(CATEGORICAL, layout.categorical_blocks, strict=True):
        expected = np.ones(len(out))
        expected[unseen_rows[name]] = 0.0
        np.testing.assert_array_equal(out[:, start:stop].sum(axis=1), expected)
    # The all-NaN column is imputed (as 0 before scaling) and has a missing indicator.
    assert layout.regression_column.count(NUMERIC.index("empty")) == 2


def test_fast_preprocessor_with_max_categories_and_no_indicators():
    preprocessor = fitted_preprocessor(
        "robust", add_missing_indicators=False, min_frequency=None, max_categories=3
    )
    fast = FastPreprocessor.from_fitted(preprocessor, NUMERIC, CATEGORICAL)
    source = scoring_frame()
    np.testing.assert_array_equal(fast.transform(source), reference(preprocessor, source))


def test_fast_preprocessor_matches_mixed_object_levels_by_their_text():
    # 1, 1.0 and True compare equal in Python; normalise_frame tells them apart by str().
    levels = np.array([1, 1.0, True, "1"] * 3 + [2, 2], dtype=object)
    fit_data = pd.DataFrame({"v": np.arange(len(levels), dtype=float), "mixed": levels})
    data = normalise_frame(fit_data, ["v"], ["mixed"])
    preprocessor = build_preprocessor(
        data,
        ["v"],
        ["mixed"],
        PreprocessingSettings(
            scaling="standard",
            numeric_imputation="mean",
            add_missing_indicators=True,
            min_frequency=None,
            max_categories=None,
            random_state=0,
        ),
    ).fit(data)
    fast = FastPreprocessor.from_fitted(preprocessor, ["v"], ["mixed"])
    source = pd.DataFrame(
        {"v": [0.0, 1.0, 2.0, 3.0], "mixed": np.array([True, 1.0, 1, None], dtype=object)}
    )
    expected = preprocessor.transform(normalise_frame(source, ["v"], ["mixed"]))
    assert sorted(describe_layout(preprocessor, ["v"], ["mixed"]).levels[0]) == [
        "1",
        "1.0",
        "2",
        "True",
    ]
    np.testing.assert_array_equal(fast.transform(source), expected.astype(np.float32))


def test_fast_preprocessor_declines_a_transformer_it_does_not_know():
    data = normalise_frame(frame(), ["amount"], ["city"])
    other = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="error", sparse_output=False), ["city"])]
    ).fit(data)
    assert FastPreprocessor.from_fitted(other, [], ["city"]) is None
    assert FastPreprocessor.from_fitted(other, ["amount"], ["city"]) is None


def test_fast_preprocessor_names_a_numeric_column_that_holds_text():
    preprocessor = fitted_preprocessor("standard")
    fast = FastPreprocessor.from_fitted(preprocessor, NUMERIC, CATEGORICAL)
    source = scoring_frame()
    source["count"] = source["count"].astype(object)
    source.loc[0, "count"] = "many"
    with pytest.raises(ValueError, match="numeric column 'count' must hold numbers"):
        fast.transform(source)


def test_fast_preprocessor_replays_auto_scaling_and_flags():
    source = awkward_frame(500, seed=0)
    source["amount"] = np.exp(source["amount"] / 10)  # skewed: power-transformed
    source["bit"] = (np.random.default_rng(3).random(500) < 0.2).astype(float)
    source.loc[:4, "bit"] = np.nan
    numeric = [*NUMERIC, "bit"]
    data = normalise_frame(source, numeric, CATEGORICAL)
    preprocessor = fit_preprocessor(
        data, numeric, CATEGORICAL, PreprocessingSettings(
            scaling="auto", numeric_imputation="median", add_missing_indicators=True,
            min_frequency=10, max_categories=None, random_state=0, binary=["flag", "bit"],
        ),
    )  # fmt: skip
    fast = FastPreprocessor.from_fitted(preprocessor, numeric, CATEGORICAL)
    assert fast is not None
    scoring = scoring_frame()
    scoring["amount"] = np.exp(scoring["amount"].clip(upper=1e3) / 10)
    scoring["bit"] = np.r_[[0.0, 1.0, np.nan, 3.0], np.zeros(len(scoring) - 4)]
    expected = preprocessor.transform(normalise_frame(scoring, numeric, CATEGORICAL))
    # scikit-learn runs every column through the power transform (lambda 1 is the identity up
    # to rounding); the replay skips those columns, so the match is to float32 rounding.
    np.testing.assert_allclose(fast.transform(scoring), expected.astype(np.float32), atol=1e-6)
    layout = describe_layout(preprocessor, numeric, CATEGORICAL)
    bit_block = layout.categorical_blocks[1]
    assert layout.levels[1] == ("0", "1", "__missing__")
    np.testing.assert_array_equal(
        fast.transform(scoring)[:4, bit_block[0] : bit_block[1]],
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]],
    )


@pytest.mark.parametrize("n_rows", [1, 3, 64, 1001])
def test_yeojohnson_on_all_columns_is_scipys_per_column_transform_bit_for_bit(n_rows):
    rng = np.random.default_rng(n_rows)
    # General lambdas, and those within float64's eps of 0 and 2 (scipy's special cases).
    lambdas = np.array([0.37, -1.4, 3.2, 0.0, 1e-17, 2.0, 2 + 1e-16, 1.0])
    values = np.asfortranarray(rng.standard_normal((n_rows, len(lambdas))) * 50)
    values[::4, 2] = -values[::4, 2]
    expected = np.column_stack(
        [stats.yeojohnson(values[:, j].copy(), lambdas[j]) for j in range(len(lambdas))]
    )
    got = yeojohnson(values, lambdas)
    assert np.ascontiguousarray(got).tobytes() == expected.tobytes()
