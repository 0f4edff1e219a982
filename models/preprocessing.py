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
- replays the fitted ``ColumnTransformer`` in numpy (:class:`models.fast_preprocessing.FastPreprocessor`)
  for scoring: the same matrix, several times faster, without converting every categorical value to
  ``str``.

Two column rules are data-driven (``scaling="auto"`` and ``binary_columns=True`` in the detector):
a numeric column with exactly two distinct values is a flag and is reconstructed like a two-level
categorical column (a cross-entropy in nats instead of a squared error on a standardised 0/1, which
lets a rare flag's every set value count like a 10-sigma outlier); a numeric column whose bulk is
skewed (:func:`skewed_columns`: a log-normal-like amount, not a symmetric column with a few extreme
rows) is reshaped by a Yeo-Johnson power transform whose lambda is kept in [0, 1] (between a
logarithm and the identity: unbounded, so the ordinary large values of a skewed amount stop
looking like outliers while its extremes stay extreme), then standard-scaled like every other
numeric column.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)

SCALINGS = ("auto", "standard", "robust", "quantile", "minmax", "none")
# scaling="auto" reshapes a numeric column whose sample skewness on the training rows exceeds this in
# absolute value (a log-normal-like amount has 2-10; a symmetric measurement about 0) ...
SKEW_LIMIT = 1.0
# ... and whose quantile skewness of the central 80% exceeds this (a log-normal with sigma 0.6 has
# 0.37, an exponential 0.47; a normal 0): see :func:`skewed_columns`.
BULK_SKEW_LIMIT = 0.3
# The interquartile range of a normal distribution in standard deviations.
NORMAL_IQR = 1.3489795003921634
NUMERIC_IMPUTATIONS = ("median", "mean")
# Stands for a missing categorical value, so "missing" is a level the model can learn.
MISSING_LEVEL = "__missing__"
# Scaled inputs are clipped to this magnitude so an absurd value cannot overflow float32 squares.
INPUT_CLIP = 1e4


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


def categorical_text(series: pd.Series) -> np.ndarray:
    """(n,) object array: each value of a categorical column as the text its level is known by,
    missing values (None, NaN, pd.NA) as :data:`MISSING_LEVEL`.

    The text is Arrow's cast to string, the form every batch read from Parquet gets
    (``tasks.frames.feature_frame``): ``True`` is ``'true'``, ``1.0`` is ``'1'``. A model trained
    on batches and the same values in a pandas frame (a notebook, a test) then meet the same
    levels; Python's ``str()`` would put ``'True'`` and ``'1.0'`` on unseen ones. Values Arrow
    cannot hold in one column (an object column mixing types) fall back to ``str()``.
    """
    missing = series.isna().to_numpy()
    if _holds_strings(series):
        # Already strings (the usual scoring frame): skip the per-value conversion.
        as_text = series.to_numpy(dtype=object, copy=True)
    else:
        try:
            arrow = pa.Array.from_pandas(series).cast(pa.string())
            as_text = arrow.to_numpy(zero_copy_only=False).astype(object, copy=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            as_text = series.astype(object).astype(str).to_numpy(dtype=object)
    as_text[missing] = MISSING_LEVEL
    return as_text


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
        data[name] = categorical_text(frame[columns[name]])
    return pd.DataFrame(data, index=frame.index, columns=[*numeric, *categorical])


def clipped_features(preprocessor: ColumnTransformer, normalised: pd.DataFrame) -> np.ndarray:
    """(n, n_columns) frame from :func:`normalise_frame` -> (n, n_features) float32 through the
    fitted ``preprocessor``, clipped to +-:data:`INPUT_CLIP`: the matrix the networks see."""
    features = preprocessor.transform(normalised).astype(np.float32, copy=False)
    return np.clip(features, -INPUT_CLIP, INPUT_CLIP, out=features)


def binary_columns(normalised: pd.DataFrame, numeric: Sequence[str]) -> list[str]:
    """The numeric columns of ``normalised`` with exactly two distinct finite values (flags)."""
    flags = []
    for name in numeric:
        values = normalised[name].to_numpy(dtype=np.float64)
        if np.unique(values[np.isfinite(values)]).size == 2:
            flags.append(name)
    return flags


def skewed_columns(values: np.ndarray) -> np.ndarray:
    """(d,) bool: which columns of the imputed (n, d) matrix ``scaling="auto"`` reshapes.

    A column is reshaped when its bulk is skewed, not merely its tail: its sample skewness exceeds
    :data:`SKEW_LIMIT` and so does the skewness of its central 80% (Kelley's quantile skewness,
    ``(q90 + q10 - 2 q50) / (q90 - q10)``, above :data:`BULK_SKEW_LIMIT` in absolute value), with
    ``q10 < q50 < q90``. A symmetric column whose skewness comes from a few extreme rows (often the
    anomalies themselves) keeps its distances, and so does a spike with a tail (a count that is
    usually 0): reshaping either would pull its outliers in.
    """
    centred = values - values.mean(axis=0)
    variance = (centred**2).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        skewness = np.nan_to_num((centred**3).mean(axis=0) / variance**1.5)
    if not len(values):
        return np.zeros(values.shape[1], dtype=bool)
    q10, q50, q90 = np.percentile(values, [10, 50, 90], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        bulk = np.where(q90 > q10, (q90 + q10 - 2 * q50) / (q90 - q10), 0.0)
    return (
        (np.abs(skewness) > SKEW_LIMIT)
        & (np.abs(bulk) > BULK_SKEW_LIMIT)
        & (q10 < q50)
        & (q50 < q90)
    )


def _make_scaler(scaling: str, n_rows: int, random_state: int):
    if scaling in ("auto", "standard"):
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


@dataclass(frozen=True)
class PreprocessingSettings:
    """How :func:`build_preprocessor` prepares the columns (the detector's parameters of the same
    names, see :mod:`models.detector_params`); ``binary``: numeric columns made two-level flags;
    ``skewed``: numeric columns reshaped (``scaling="auto"``; :func:`fit_preprocessor` picks
    them)."""

    scaling: str
    numeric_imputation: str
    add_missing_indicators: bool
    min_frequency: int | float | None
    max_categories: int | None
    random_state: int
    binary: Sequence[str] = ()
    skewed: Sequence[str] = ()


def build_preprocessor(
    normalised: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    settings: PreprocessingSettings,
) -> ColumnTransformer:
    """Build (unfitted) the ColumnTransformer for a frame made by :func:`normalise_frame`.

    Output column order: scaled numeric values (one per numeric column in neither ``binary`` nor
    ``skewed``), then the reshaped ``skewed`` columns (``scaling="auto"`` only: a Yeo-Johnson power
    transform, then standard scaling), then missing
    indicators (one per value column that had a missing value in ``normalised``), then one
    two-level one-hot block per ``binary`` column (its two values; a missing value is a third level
    when the fit rows had one, any other value an all-zero block), then one one-hot block per
    categorical column. Rare levels are grouped into one "infrequent" level; a level unseen at fit
    maps to that group, or to an all-zero block when the column has no rare levels.
    ``scaling="auto"`` needs :func:`fit_preprocessor` (it finishes the fit).
    """
    scaling, numeric_imputation = settings.scaling, settings.numeric_imputation
    binary, skewed, random_state = settings.binary, settings.skewed, settings.random_state
    add_missing_indicators = settings.add_missing_indicators
    min_frequency, max_categories = settings.min_frequency, settings.max_categories
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    if numeric_imputation not in NUMERIC_IMPUTATIONS:
        raise ValueError(
            f"numeric_imputation must be one of {NUMERIC_IMPUTATIONS}, got {numeric_imputation!r}"
        )
    if skewed and scaling != "auto":
        raise ValueError(f"skewed columns are reshaped by scaling='auto' only, got {scaling!r}")
    transformers = []
    plain = [c for c in numeric if c not in set(binary) and c not in set(skewed)]
    # keep_empty_features keeps an all-NaN column (imputed as 0) so the layout is stable.
    impute = SimpleImputer(strategy=numeric_imputation, keep_empty_features=True)
    if plain:
        scaler = _make_scaler(scaling, len(normalised), random_state)
        transformers.append(("numeric", Pipeline([("impute", impute), ("scale", scaler)]), plain))
    if skewed:
        steps = [
            ("impute", clone(impute)),
            ("shape", PowerTransformer(standardize=False)),
            ("scale", StandardScaler()),
        ]
        transformers.append(("skewed", Pipeline(steps), list(skewed)))
    values = [*plain, *skewed]
    if values:
        with_missing = [c for c in values if normalised[c].isna().any()]
        if add_missing_indicators and with_missing:
            transformers.append(
                ("missing", MissingIndicator(features="all", error_on_new=False), with_missing)
            )
    if binary:
        flags = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)
        transformers.append(("binary", flags, list(binary)))
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


def fit_preprocessor(
    normalised: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    settings: PreprocessingSettings,
) -> ColumnTransformer:
    """Build (:func:`build_preprocessor`, same settings) and fit the preprocessor on
    ``normalised``. With ``scaling="auto"`` the column rules apply first: :func:`skewed_columns`
    picks the columns to reshape (a Yeo-Johnson power transform with lambda in [0, 1], then
    standard scaling); the others are standard-scaled."""
    if settings.scaling == "auto":
        binary = set(settings.binary)
        candidates = [c for c in numeric if c not in binary]
        values = normalised[candidates].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column has no median
            values = np.where(np.isnan(values), np.nanmedian(values, axis=0), values)
        values = np.nan_to_num(values)
        chosen = skewed_columns(values) if len(values) else np.zeros(len(candidates), bool)
        skewed = [c for c, s in zip(candidates, chosen, strict=True) if s]
        settings = dataclasses.replace(settings, skewed=skewed)
    preprocessor = build_preprocessor(normalised, numeric, categorical, settings)
    preprocessor.fit(normalised)
    if "skewed" in preprocessor.named_transformers_:
        # A negative lambda maps the whole upper tail into a bounded interval: the largest values,
        # often the anomalies, would become indistinguishable. Lambda is kept in [0, 1]: from a
        # logarithm (0) to the identity (1), never past them.
        pipeline = preprocessor.named_transformers_["skewed"]
        columns = next(cols for name, _, cols in preprocessor.transformers_ if name == "skewed")
        imputed = pipeline.named_steps["impute"].transform(normalised[list(columns)])
        shape = pipeline.named_steps["shape"]
        shape.lambdas_ = np.clip(shape.lambdas_, 0.0, 1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            pipeline.named_steps["scale"].fit(shape.transform(imputed))
    return preprocessor


@dataclass(frozen=True)
class FeatureLayout:
    """Where each original column lives in the preprocessed matrix.

    Attributes:
        columns: original column names, ``[*numeric, *categorical]``; contributions use this order.
        n_features: width of the preprocessed matrix.
        n_regression: the first ``n_regression`` features are reconstructed with a squared error
            (scaled numeric values, then missing indicators).
        regression_column: (n_regression,) index into ``columns`` of each regression feature.
        categorical_blocks: one ``(start, stop, column_index)`` per binary numeric column (flags,
            first) and per categorical column: its one-hot block is ``features[start:stop]``,
            reconstructed with a cross-entropy over its levels.
        levels: for each block, the names of its one-hot levels (``"infrequent"`` for the group of
            rare levels; a flag's two values as text, e.g. ``"0"``, ``"1"``).
        n_values: the first ``n_values`` features are scaled numeric values (one per non-binary
            numeric column, in column order); the missing indicators follow. ``None``: all
            ``n_regression`` (a layout without indicators).
        binary_values: for each flag block, its two values (low, high) as numbers.
    """

    columns: tuple[str, ...]
    n_features: int
    n_regression: int
    regression_column: tuple[int, ...]
    categorical_blocks: tuple[tuple[int, int, int], ...]
    levels: tuple[tuple[str, ...], ...]
    n_values: int | None = None
    binary_values: tuple[tuple[float, float], ...] = ()

    @property
    def value_columns(self) -> tuple[int, ...]:
        """Column index of each scaled numeric value feature (the first features)."""
        count = self.n_regression if self.n_values is None else self.n_values
        return self.regression_column[:count]

    def to_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "n_features": self.n_features,
            "n_regression": self.n_regression,
            "regression_column": list(self.regression_column),
            "categorical_blocks": [list(b) for b in self.categorical_blocks],
            "levels": [list(level) for level in self.levels],
            "n_values": self.n_values,
            "binary_values": [list(v) for v in self.binary_values],
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
            n_values=data.get("n_values"),
            binary_values=tuple(
                (float(low), float(high)) for low, high in data.get("binary_values", [])
            ),
        )


def describe_layout(
    preprocessor: ColumnTransformer, numeric: Sequence[str], categorical: Sequence[str]
) -> FeatureLayout:
    """Read the :class:`FeatureLayout` of a fitted preprocessor built by :func:`build_preprocessor`."""
    columns = (*numeric, *categorical)
    column_index = {name: i for i, name in enumerate(columns)}
    named = {name: list(cols) for name, _, cols in preprocessor.transformers_}
    value_names = [*named.get("numeric", []), *named.get("skewed", [])]
    regression_column = [column_index[c] for c in value_names]
    n_values = len(regression_column)
    if "missing" in preprocessor.named_transformers_:
        regression_column += [column_index[c] for c in named["missing"]]
    blocks, levels, binary_values = [], [], []
    start = len(regression_column)
    if "binary" in preprocessor.named_transformers_:
        flags: OneHotEncoder = preprocessor.named_transformers_["binary"]
        for name, seen in zip(named["binary"], flags.categories_, strict=True):
            finite = [float(v) for v in seen if np.isfinite(v)]
            names = [f"{v:g}" if np.isfinite(v) else MISSING_LEVEL for v in seen]
            blocks.append((start, start + len(names), column_index[name]))
            levels.append(tuple(names))
            binary_values.append((min(finite), max(finite)))
            start += len(names)
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
        n_values=n_values,
        binary_values=tuple(binary_values),
    )
