"""Column handling and the scikit-learn preprocessing that feeds the autoencoder.

The detector sees a DataFrame (or a numeric array) with numeric and categorical columns. This module

- resolves which columns are used (named by the caller, or detected from the dtypes),
- normalises a frame into the shapes the preprocessor expects (numeric columns as float64,
  categorical columns as object arrays of strings with a sentinel for missing values),
- builds the ``ColumnTransformer`` (imputation, missing indicators, scaling, one-hot with rare-level
  grouping and unseen-level handling), and
- describes the fitted output (:class:`FeatureLayout`): which output feature belongs to which original
  column, and where each categorical column's one-hot block lies, so the loss can use a regression
  error for numeric features and a cross-entropy per categorical column, and
- replays the fitted ``ColumnTransformer`` in numpy (:class:`FastPreprocessor`) for scoring: the
  same matrix, several times faster, without converting every categorical value to ``str``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)

SCALINGS = ("standard", "robust", "quantile", "minmax", "none")
NUMERIC_IMPUTATIONS = ("median", "mean")
# Stands for a missing categorical value, so "missing" is a level the model can learn.
MISSING_LEVEL = "__missing__"


def numpy_column_names(n_columns: int) -> list[str]:
    """Names given to the columns of a numpy input: ``x0 .. x{d-1}``."""
    return [f"x{i}" for i in range(n_columns)]


def as_frame(X) -> pd.DataFrame:
    """Return ``X`` as a DataFrame; a 2-D numpy array gets columns ``x0 .. x{d-1}``."""
    if isinstance(X, pd.DataFrame):
        names = [str(name) for name in X.columns]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(
                f"X has duplicate column names {duplicated}; column names must be unique: "
                "rename or drop the copies"
            )
        return X
    if isinstance(X, pd.Series):
        raise TypeError(
            "X must be a 2-D table (DataFrame or array of shape (n_rows, n_columns)), got a Series; "
            "pass series.to_frame() for a single column"
        )
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(
            f"X must be 2-D (n_rows, n_columns), got an array with shape {array.shape}; "
            "reshape a single row with x.reshape(1, -1)"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(
            f"a numpy X must be numeric, got dtype {array.dtype}; "
            "pass a DataFrame to use categorical columns"
        )
    return pd.DataFrame(array, columns=numpy_column_names(array.shape[1]))


def _is_numeric_column(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _is_categorical_column(series: pd.Series) -> bool:
    return (
        isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(series)
        or pd.api.types.is_object_dtype(series)
    )


def resolve_columns(
    frame: pd.DataFrame,
    numeric_columns: Sequence[str] | None,
    categorical_columns: Sequence[str] | None,
) -> tuple[list[str], list[str]]:
    """Decide which columns the detector uses.

    Both ``None``: every column of ``frame`` is used, numeric dtypes (int, float, bool) as numeric and
    string/object/category dtypes as categorical; other dtypes (datetimes, ...) are an error.
    Otherwise the named columns are used exactly (a list left ``None`` counts as empty) and every
    other column of the frame (ids, timestamps, labels) is ignored.

    Returns ``(numeric, categorical)`` column-name lists in frame order for detected columns and in
    the given order for named ones.
    """
    if numeric_columns is None and categorical_columns is None:
        numeric, categorical, unusable = [], [], []
        for name in frame.columns:
            series = frame[name]
            if _is_numeric_column(series):
                numeric.append(str(name))
            elif _is_categorical_column(series):
                categorical.append(str(name))
            else:
                unusable.append(f"{name} ({series.dtype})")
        if unusable:
            raise TypeError(
                "detected columns must be numeric or categorical (string/object/category), got "
                f"{', '.join(unusable)}; drop them or name the columns to use with "
                "numeric_columns= / categorical_columns="
            )
    else:
        numeric = [str(c) for c in (numeric_columns or [])]
        categorical = [str(c) for c in (categorical_columns or [])]
        overlap = sorted(set(numeric) & set(categorical))
        if overlap:
            raise ValueError(
                f"a column cannot be both numeric and categorical, got {overlap} in both lists; "
                "keep each column in one of numeric_columns / categorical_columns"
            )
        for kind, names in (("numeric_columns", numeric), ("categorical_columns", categorical)):
            duplicates = sorted({c for c in names if names.count(c) > 1})
            if duplicates:
                raise ValueError(f"{kind} must not repeat a column, got {duplicates} twice")
    if not numeric and not categorical:
        raise ValueError(
            "the detector needs at least one column, got none; pass a frame with columns "
            "or name them with numeric_columns= / categorical_columns="
        )
    return numeric, categorical


def check_columns_present(frame: pd.DataFrame, required: Sequence[str]) -> None:
    """Raise ``ValueError`` naming every required column that ``frame`` lacks."""
    present = {str(c) for c in frame.columns}
    missing = [c for c in required if c not in present]
    if missing:
        raise ValueError(
            f"X is missing {len(missing)} column(s) the detector was fitted on: {missing}; "
            "pass a frame with these columns (extra columns are ignored)"
        )


def _numeric_values(series: pd.Series, name: str) -> np.ndarray:
    """(n,) float64 copy of a numeric column with infinities as NaN; an error names the column."""
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "fiu":
        # Plain numpy numbers (the usual scoring frame): no parsing needed.
        values = np.array(series.to_numpy(), dtype=np.float64)
    else:
        if pd.api.types.is_bool_dtype(series):
            series = series.astype("float64")
        try:
            parsed = pd.to_numeric(series, errors="raise")
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"numeric column {name!r} must hold numbers, got a value that is not ({error}); "
                "clean the column or declare it in categorical_columns"
            ) from None
        values = np.array(parsed, dtype=np.float64)  # a copy: the caller's frame stays as is
    # An infinite value cannot be scaled; it is treated as missing (imputed and indicated).
    values[np.isinf(values)] = np.nan
    return values


def _holds_strings(series: pd.Series) -> bool:
    """True when every non-missing value of ``series`` is already a ``str``."""
    if isinstance(series.dtype, pd.StringDtype):
        return True
    if not pd.api.types.is_object_dtype(series):
        return False
    return pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")


def normalise_frame(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    """Select the detector's columns and give them the types the preprocessor expects.

    Numeric columns become float64 (a value that is not a number is an error naming the column;
    infinities become NaN, i.e. missing);
    categorical columns become object arrays of ``str`` with missing values (None, NaN, pd.NA) as
    :data:`MISSING_LEVEL`. Returns a new frame with columns ``[*numeric, *categorical]``.
    """
    columns = {str(c): c for c in frame.columns}
    data: dict[str, np.ndarray] = {}
    for name in numeric:
        data[name] = _numeric_values(frame[columns[name]], name)
    for name in categorical:
        series = frame[columns[name]]
        missing = series.isna().to_numpy()
        if _holds_strings(series):
            # Already strings (the usual scoring frame): skip the per-value str() conversion.
            as_text = series.to_numpy(dtype=object, copy=True)
        else:
            as_text = series.astype(object).astype(str).to_numpy(dtype=object)
        as_text[missing] = MISSING_LEVEL
        data[name] = as_text
    return pd.DataFrame(data, index=frame.index, columns=[*numeric, *categorical])


def _make_scaler(scaling: str, n_rows: int, random_state: int):
    if scaling == "standard":
        return StandardScaler()
    if scaling == "robust":
        return RobustScaler()
    if scaling == "quantile":
        return QuantileTransformer(
            n_quantiles=max(2, min(1000, n_rows)),
            output_distribution="normal",
            random_state=random_state,
        )
    if scaling == "minmax":
        return MinMaxScaler()
    return "passthrough"


def build_preprocessor(
    normalised: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    scaling: str,
    numeric_imputation: str,
    add_missing_indicators: bool,
    min_frequency: int | float | None,
    max_categories: int | None,
    random_state: int,
) -> ColumnTransformer:
    """Build (unfitted) the ColumnTransformer for a frame made by :func:`normalise_frame`.

    Output column order: scaled numeric values (one per numeric column), then missing indicators
    (one per numeric column that had a missing value in ``normalised``), then one one-hot block per
    categorical column. Rare levels are grouped into one "infrequent" level; a level unseen at fit
    maps to that group, or to an all-zero block when the column has no rare levels.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    if numeric_imputation not in NUMERIC_IMPUTATIONS:
        raise ValueError(
            f"numeric_imputation must be one of {NUMERIC_IMPUTATIONS}, got {numeric_imputation!r}"
        )
    transformers = []
    if numeric:
        numeric_steps = Pipeline(
            [
                # keep_empty_features keeps an all-NaN column (imputed as 0) so the layout is stable.
                (
                    "impute",
                    SimpleImputer(strategy=numeric_imputation, keep_empty_features=True),
                ),
                ("scale", _make_scaler(scaling, len(normalised), random_state)),
            ]
        )
        transformers.append(("numeric", numeric_steps, list(numeric)))
        with_missing = [c for c in numeric if normalised[c].isna().any()]
        if add_missing_indicators and with_missing:
            transformers.append(
                ("missing", MissingIndicator(features="all", error_on_new=False), with_missing)
            )
    if categorical:
        encoder = OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            min_frequency=min_frequency,
            max_categories=max_categories,
            sparse_output=False,
            dtype=np.float32,
        )
        transformers.append(("categorical", encoder, list(categorical)))
    return ColumnTransformer(transformers, sparse_threshold=0.0, verbose_feature_names_out=False)


@dataclass(frozen=True)
class FeatureLayout:
    """Where each original column lives in the preprocessed matrix.

    Attributes:
        columns: original column names, ``[*numeric, *categorical]``; contributions use this order.
        n_features: width of the preprocessed matrix.
        n_regression: the first ``n_regression`` features are reconstructed with a squared error
            (scaled numeric values, then missing indicators).
        regression_column: (n_regression,) index into ``columns`` of each regression feature.
        categorical_blocks: one ``(start, stop, column_index)`` per categorical column: its one-hot
            block is ``features[start:stop]``, reconstructed with a cross-entropy over its levels.
        levels: for each categorical column, the names of its one-hot levels (``"infrequent"`` for the
            group of rare levels).
    """

    columns: tuple[str, ...]
    n_features: int
    n_regression: int
    regression_column: tuple[int, ...]
    categorical_blocks: tuple[tuple[int, int, int], ...]
    levels: tuple[tuple[str, ...], ...]

    def to_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "n_features": self.n_features,
            "n_regression": self.n_regression,
            "regression_column": list(self.regression_column),
            "categorical_blocks": [list(b) for b in self.categorical_blocks],
            "levels": [list(level) for level in self.levels],
        }

    @classmethod
    def from_dict(cls, data: dict) -> FeatureLayout:
        return cls(
            columns=tuple(data["columns"]),
            n_features=int(data["n_features"]),
            n_regression=int(data["n_regression"]),
            regression_column=tuple(int(i) for i in data["regression_column"]),
            categorical_blocks=tuple(tuple(int(v) for v in b) for b in data["categorical_blocks"]),
            levels=tuple(tuple(level) for level in data["levels"]),
        )


def describe_layout(
    preprocessor: ColumnTransformer, numeric: Sequence[str], categorical: Sequence[str]
) -> FeatureLayout:
    """Read the :class:`FeatureLayout` of a fitted preprocessor built by :func:`build_preprocessor`."""
    columns = (*numeric, *categorical)
    column_index = {name: i for i, name in enumerate(columns)}
    regression_column = [column_index[c] for c in numeric]
    if "missing" in preprocessor.named_transformers_:
        indicator_columns = next(
            cols for name, _, cols in preprocessor.transformers_ if name == "missing"
        )
        regression_column += [column_index[c] for c in indicator_columns]
    blocks, levels = [], []
    start = len(regression_column)
    if categorical:
        encoder: OneHotEncoder = preprocessor.named_transformers_["categorical"]
        infrequent = getattr(encoder, "infrequent_categories_", [None] * len(categorical))
        for name, seen, rare in zip(categorical, encoder.categories_, infrequent, strict=True):
            rare_set = set() if rare is None else {str(v) for v in rare}
            kept = [str(v) for v in seen if str(v) not in rare_set]
            if rare_set:
                kept.append("infrequent")
            blocks.append((start, start + len(kept), column_index[name]))
            levels.append(tuple(kept))
            start += len(kept)
    return FeatureLayout(
        columns=tuple(columns),
        n_features=start,
        n_regression=len(regression_column),
        regression_column=tuple(regression_column),
        categorical_blocks=tuple(blocks),
        levels=tuple(levels),
    )


class FastPreprocessor:
    """A fitted :func:`build_preprocessor` ColumnTransformer, replayed in numpy.

    ``FastPreprocessor.from_fitted(preprocessor, numeric, categorical)`` reads the fitted parameters
    (imputer statistics, missing-indicator columns, scaler parameters, one-hot categories and rare
    levels) and :meth:`transform` gives the same matrix as
    ``preprocessor.transform(normalise_frame(frame, numeric, categorical))`` cast to float32, without
    the per-value string work: numeric columns are imputed and scaled as one float64 matrix (the
    scaler's own arithmetic, in the same order, so values are bit-identical) and each categorical
    column is factorised once (a hash pass in C) and its few distinct values looked up.
    A scaler without a numpy replay (the quantile transform) is applied through its own
    ``transform`` on the imputed matrix.
    """

    def __init__(
        self,
        numeric: Sequence[str],
        categorical: Sequence[str],
        impute_values: np.ndarray,
        scaler,
        indicator_columns: Sequence[int],
        level_positions: Sequence[dict[str, int]],
        unknown_positions: Sequence[int],
        blocks: Sequence[tuple[str, int, int]],
        n_features: int,
    ):
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.impute_values = impute_values
        self.scaler = scaler
        self.indicator_columns = np.asarray(indicator_columns, dtype=np.intp)
        self.level_positions = list(level_positions)
        self.unknown_positions = list(unknown_positions)
        self.blocks = list(blocks)
        self.n_features = n_features

    @classmethod
    def from_fitted(
        cls, preprocessor: ColumnTransformer, numeric: Sequence[str], categorical: Sequence[str]
    ) -> FastPreprocessor | None:
        """The replay of ``preprocessor``, or ``None`` when it is not one that
        :func:`build_preprocessor` makes (the caller then uses ``preprocessor.transform``)."""
        numeric, categorical = list(numeric), list(categorical)
        impute_values = np.zeros(0)
        scaler = "passthrough"
        indicator_columns: list[int] = []
        level_positions: list[dict[str, int]] = []
        unknown_positions: list[int] = []
        blocks: list[tuple[str, int, int]] = []
        start = 0
        for name, transformer, columns in getattr(preprocessor, "transformers_", []):
            columns = list(columns)
            if isinstance(transformer, str) and transformer == "drop" or not len(columns):
                continue
            if name == "numeric" and columns == numeric and isinstance(transformer, Pipeline):
                steps = dict(transformer.steps)
                imputer = steps.get("impute")
                if (
                    list(steps) != ["impute", "scale"]
                    or not isinstance(imputer, SimpleImputer)
                    or imputer.strategy not in NUMERIC_IMPUTATIONS
                    or imputer.add_indicator
                    or not _is_nan(imputer.missing_values)
                    or len(imputer.statistics_) != len(numeric)
                ):
                    return None
                impute_values = np.asarray(imputer.statistics_, dtype=np.float64)
                scaler = steps["scale"]
                width = len(numeric)
            elif name == "missing" and isinstance(transformer, MissingIndicator):
                if (
                    transformer.features != "all"
                    or not _is_nan(transformer.missing_values)
                    or any(c not in numeric for c in columns)
                    or len(transformer.features_) != len(columns)
                ):
                    return None
                indicator_columns = [numeric.index(c) for c in columns]
                width = len(columns)
            elif name == "categorical" and columns == categorical:
                if not (
                    isinstance(transformer, OneHotEncoder)
                    and transformer.drop is None
                    and transformer.handle_unknown in ("infrequent_if_exist", "ignore")
                    and not transformer.sparse_output
                ):
                    return None
                rare_levels = getattr(
                    transformer, "infrequent_categories_", [None] * len(categorical)
                )
                width = 0
                for seen, rare in zip(transformer.categories_, rare_levels, strict=True):
                    rare_set = set() if rare is None else {str(v) for v in rare}
                    positions = {}
                    kept = 0
                    for level in seen:
                        if str(level) not in rare_set:
                            positions[str(level)] = width + kept
                            kept += 1
                    infrequent = width + kept if rare_set else -1
                    for level in rare_set:
                        positions[level] = infrequent
                    level_positions.append(positions)
                    # An unseen level joins the rare group, or gets an all-zero block without one.
                    unknown = infrequent if transformer.handle_unknown != "ignore" else -1
                    unknown_positions.append(unknown)
                    width += kept + (1 if rare_set else 0)
            else:
                return None
            blocks.append((name, start, start + width))
            start += width
        if not blocks:
            return None
        return cls(
            numeric,
            categorical,
            impute_values,
            scaler,
            indicator_columns,
            level_positions,
            unknown_positions,
            blocks,
            start,
        )

    def transform(self, frame: pd.DataFrame, clip: float | None = None) -> np.ndarray:
        """(n, n_columns) frame -> (n, n_features) float32 preprocessed matrix.

        ``frame`` holds the fitted columns (others are ignored) in any of the forms
        :func:`normalise_frame` accepts. ``clip`` limits the scaled numeric values to
        ``[-clip, clip]`` (the other features are 0/1 already).
        """
        columns = {str(c): c for c in frame.columns}
        n_rows = len(frame)
        features = np.zeros((n_rows, self.n_features), dtype=np.float32)
        numeric_block = missing = None
        if self.numeric:
            # Column-major: each column is written contiguously; the arithmetic is elementwise.
            values = np.empty((n_rows, len(self.numeric)), dtype=np.float64, order="F")
            for j, name in enumerate(self.numeric):
                values[:, j] = _numeric_values(frame[columns[name]], name)
            missing = np.isnan(values)
            np.copyto(values, self.impute_values, where=missing)
            numeric_block = _scale(self.scaler, values)
        categorical_start = 0
        for name, start, stop in self.blocks:
            if name == "numeric":
                target = features[:, start:stop]
                target[...] = numeric_block
                if clip is not None:
                    np.clip(target, -clip, clip, out=target)
            elif name == "missing":
                features[:, start:stop] = missing[:, self.indicator_columns]
            else:
                categorical_start = start
        if self.categorical and n_rows:
            flat = features.reshape(-1)
            row_offsets = np.arange(n_rows, dtype=np.int64) * self.n_features + categorical_start
            for j, name in enumerate(self.categorical):
                position = self._level_positions(frame[columns[name]], j)
                present = position >= 0
                if present.all():
                    flat[row_offsets + position] = 1.0
                else:
                    flat[row_offsets[present] + position[present]] = 1.0
        return features

    def _level_positions(self, series: pd.Series, j: int) -> np.ndarray:
        """(n,) int64 one-hot position of each value of categorical column ``j`` within the
        categorical features, -1 for an unseen level without a rare group."""
        if not (_holds_strings(series) or isinstance(series.dtype, pd.CategoricalDtype)):
            # Other values are matched by their str() form, as normalise_frame does; converting
            # first keeps values that compare equal (1, 1.0, True) apart.
            missing = series.isna().to_numpy()
            as_text = series.astype(object).astype(str).to_numpy(dtype=object)
            as_text[missing] = MISSING_LEVEL
            series = pd.Series(as_text, dtype=object)
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        positions = self.level_positions[j]
        unknown = self.unknown_positions[j]
        # The last entry is for code -1 (a missing value), which stands for MISSING_LEVEL.
        lookup = np.array(
            [positions.get(str(level), unknown) for level in uniques]
            + [positions.get(MISSING_LEVEL, unknown)],
            dtype=np.int64,
        )
        return lookup[codes]


def _is_nan(value) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _scale(scaler, values: np.ndarray) -> np.ndarray:
    """Apply a fitted scaler to the imputed (n, n_numeric) float64 matrix, in place when replayed.

    The replays repeat scikit-learn's own in-place operations in the same order, so the result is
    bit-identical to ``scaler.transform(values)``.
    """
    if isinstance(scaler, str) and scaler == "passthrough" or scaler is None:
        return values
    kind = type(scaler)
    if kind is StandardScaler:
        if scaler.with_mean:
            values -= scaler.mean_
        if scaler.with_std:
            values /= scaler.scale_
        return values
    if kind is RobustScaler:
        if scaler.with_centering:
            values -= scaler.center_
        if scaler.with_scaling:
            values /= scaler.scale_
        return values
    if kind is MinMaxScaler and not scaler.clip:
        values *= scaler.scale_
        values += scaler.min_
        return values
    return scaler.transform(values)
