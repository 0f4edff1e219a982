"""A fitted :func:`models.preprocessing.build_preprocessor` ColumnTransformer, replayed in numpy.

Scoring runs every row through the preprocessing; scikit-learn's ``ColumnTransformer.transform``
converts every categorical value to ``str`` and allocates per step. :class:`FastPreprocessor` reads
the fitted parameters once and gives the same matrix several times faster.
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
    PowerTransformer,
    RobustScaler,
    StandardScaler,
)

from models.preprocessing import (
    MISSING_LEVEL,
    NUMERIC_IMPUTATIONS,
    _holds_strings,
    _numeric_values,
    categorical_text,
)


@dataclass(frozen=True)
class LevelLookup:
    """How one-hot blocks are filled: the categorical columns, each one's ``{level: position}``
    and the position its unknown levels take (-1: none, an all-zero block), then the flag
    (binary) columns and their two values."""

    categorical: Sequence[str]
    level_positions: Sequence[dict[str, int]]
    unknown_positions: Sequence[int]
    binary: Sequence[str] = ()
    binary_levels: Sequence[np.ndarray] = ()


class FastPreprocessor:
    """A fitted :func:`models.preprocessing.build_preprocessor` ColumnTransformer, in numpy.

    ``FastPreprocessor.from_fitted(preprocessor, numeric, categorical)`` reads the fitted parameters
    (imputer statistics, missing-indicator columns, scaler parameters of the plain and reshaped
    numeric blocks,
    flag values, one-hot categories and rare levels) and :meth:`transform` gives the same matrix as
    ``preprocessor.transform(normalise_frame(frame, numeric, categorical))`` cast to float32, without
    the per-value string work: numeric columns are imputed and scaled as one float64 matrix (the
    scaler's own arithmetic, in the same order, so values are bit-identical; the reshaped columns go
    through scipy's Yeo-Johnson as scikit-learn calls it) and
    each categorical column is factorised once (a hash pass in C) and its few distinct values looked
    up. A scaler without a numpy replay (the quantile transform) is applied through its own
    ``transform`` on the imputed matrix.
    """

    def __init__(
        self,
        value_blocks: Sequence[tuple[str, list[str], np.ndarray, list]],
        indicator_columns: Sequence[int],
        levels: LevelLookup,
        blocks: Sequence[tuple[str, int, int]],
        n_features: int,
    ):
        categorical, binary, binary_levels = levels.categorical, levels.binary, levels.binary_levels
        level_positions, unknown_positions = levels.level_positions, levels.unknown_positions
        # (name, columns, imputation values, fitted steps after the imputer) per value block.
        self.value_blocks = list(value_blocks)
        self.numeric = [c for _, columns, _, _ in self.value_blocks for c in columns]
        self.impute_values = (
            np.concatenate([values for _, _, values, _ in self.value_blocks])
            if self.value_blocks
            else np.zeros(0)
        )
        self.categorical = list(categorical)
        self.binary = list(binary)
        self.binary_levels = list(binary_levels)
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
        named = {name: list(cols) for name, _, cols in getattr(preprocessor, "transformers_", [])}
        binary = named.get("binary", [])
        values = [*named.get("numeric", []), *named.get("skewed", [])]
        if sorted(values + binary) != sorted(numeric):
            return None
        value_blocks: list[tuple[str, list[str], np.ndarray, list]] = []
        binary_levels: list[np.ndarray] = []
        indicator_columns: list[int] = []
        level_positions: list[dict[str, int]] = []
        unknown_positions: list[int] = []
        blocks: list[tuple[str, int, int]] = []
        start = 0
        for name, transformer, columns in getattr(preprocessor, "transformers_", []):
            columns = list(columns)
            if isinstance(transformer, str) and transformer == "drop" or not len(columns):
                continue
            if name in ("numeric", "skewed") and isinstance(transformer, Pipeline):
                steps = dict(transformer.steps)
                imputer = steps.get("impute")
                expected = (
                    ["impute", "scale"] if name == "numeric" else ["impute", "shape", "scale"]
                )
                if (
                    list(steps) != expected
                    or not isinstance(imputer, SimpleImputer)
                    or imputer.strategy not in NUMERIC_IMPUTATIONS
                    or imputer.add_indicator
                    or not _is_nan(imputer.missing_values)
                    or len(imputer.statistics_) != len(columns)
                    or name == "skewed"
                    and not (
                        type(steps["shape"]) is PowerTransformer
                        and steps["shape"].method == "yeo-johnson"
                        and not steps["shape"].standardize
                    )
                ):
                    return None
                after = [steps[step] for step in expected[1:]]
                statistics = np.asarray(imputer.statistics_, dtype=np.float64)
                value_blocks.append((name, columns, statistics, after))
                width = len(columns)
            elif name == "missing" and isinstance(transformer, MissingIndicator):
                if (
                    transformer.features != "all"
                    or not _is_nan(transformer.missing_values)
                    or any(c not in values for c in columns)
                    or len(transformer.features_) != len(columns)
                ):
                    return None
                indicator_columns = [values.index(c) for c in columns]
                width = len(columns)
            elif name == "binary" and columns == binary:
                if not (
                    isinstance(transformer, OneHotEncoder)
                    and transformer.drop is None
                    and transformer.handle_unknown == "ignore"
                    and not transformer.sparse_output
                    and getattr(transformer, "infrequent_categories_", None) is None
                ):
                    return None
                binary_levels = [np.asarray(c, dtype=np.float64) for c in transformer.categories_]
                width = sum(len(levels) for levels in binary_levels)
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
        levels = LevelLookup(categorical, level_positions, unknown_positions, binary, binary_levels)
        return cls(value_blocks, indicator_columns, levels, blocks, start)

    def transform(self, frame: pd.DataFrame, clip: float | None = None) -> np.ndarray:
        """(n, n_columns) frame -> (n, n_features) float32 preprocessed matrix.

        ``frame`` holds the fitted columns (others are ignored) in any of the forms
        :func:`normalise_frame` accepts. ``clip`` limits the scaled numeric values to
        ``[-clip, clip]`` (the other features are 0/1 already).
        """
        columns = {str(c): c for c in frame.columns}
        return self.transform_columns(
            len(frame),
            [_numeric_values(frame[columns[name]], name) for name in self.numeric],
            [_numeric_values(frame[columns[name]], name) for name in self.binary],
            [
                self._level_positions(frame[columns[name]], j)
                for j, name in enumerate(self.categorical)
            ],
            clip,
        )

    def transform_columns(
        self,
        n_rows: int,
        numeric: Sequence[np.ndarray],
        binary: Sequence[np.ndarray],
        level_positions: Sequence[np.ndarray],
        clip: float | None = None,
    ) -> np.ndarray:
        """The columns already read -> (n_rows, n_features) float32 preprocessed matrix.

        Args:
            n_rows: rows.
            numeric: (n_rows,) float64 per column of :attr:`numeric` (that order), NaN for missing
                (infinities included: see :func:`models.preprocessing._numeric_values`).
            binary: the same for each column of :attr:`binary`.
            level_positions: (n_rows,) int64 per column of :attr:`categorical`: each value's
                one-hot position (:meth:`level_lookup`), -1 for none.
            clip: limits the scaled numeric values to ``[-clip, clip]``.

        Every step works on whole columns, so a row's values do not depend on the rows beside it.
        """
        features = np.zeros((n_rows, self.n_features), dtype=np.float32)
        missing = None
        if self.numeric:
            # Column-major: each column is written contiguously; the arithmetic is elementwise.
            values = np.empty((n_rows, len(self.numeric)), dtype=np.float64, order="F")
            for j, column in enumerate(numeric):
                values[:, j] = column
            missing = np.isnan(values)
            np.copyto(values, self.impute_values, where=missing)
            scaled, offset = {}, 0
            for block, names, _, steps in self.value_blocks:
                part = values[:, offset : offset + len(names)]
                for step in steps:
                    part = _scale(step, part)
                scaled[block] = part
                offset += len(names)
        categorical_start = binary_start = 0
        for name, start, stop in self.blocks:
            if name in ("numeric", "skewed"):
                target = features[:, start:stop]
                target[...] = scaled[name]
                if clip is not None:
                    np.clip(target, -clip, clip, out=target)
            elif name == "missing":
                features[:, start:stop] = missing[:, self.indicator_columns]
            elif name == "binary":
                binary_start = start
            else:
                categorical_start = start
        if not n_rows:
            return features
        flat = features.reshape(-1)
        row_offsets = np.arange(n_rows, dtype=np.int64) * self.n_features
        offset = binary_start
        for flag, levels in zip(binary, self.binary_levels, strict=True):
            position = np.full(n_rows, -1, dtype=np.int64)
            for index, level in enumerate(levels):
                position[np.isnan(flag) if np.isnan(level) else flag == level] = offset + index
            present = position >= 0
            flat[row_offsets[present] + position[present]] = 1.0
            offset += len(levels)
        if self.categorical:
            row_offsets = row_offsets + categorical_start
            for position in level_positions:
                present = position >= 0
                if present.all():
                    flat[row_offsets + position] = 1.0
                else:
                    flat[row_offsets[present] + position[present]] = 1.0
        return features

    def level_lookup(self, j: int, levels: Sequence) -> np.ndarray:
        """(len(levels) + 1,) int64: the one-hot position (within the categorical features) of each
        of ``levels`` (distinct values of categorical column ``j``, matched by their ``str()``),
        then of a missing value (:data:`MISSING_LEVEL`); an unseen level gets the rare group's
        position, or -1 without one. Index it with a column's codes (-1 for missing)."""
        positions = self.level_positions[j]
        unknown = self.unknown_positions[j]
        return np.array(
            [positions.get(str(level), unknown) for level in levels]
            + [positions.get(MISSING_LEVEL, unknown)],
            dtype=np.int64,
        )

    def _level_positions(self, series: pd.Series, j: int) -> np.ndarray:
        """(n,) int64 one-hot position of each value of categorical column ``j`` within the
        categorical features, -1 for an unseen level without a rare group."""
        text_categories = isinstance(series.dtype, pd.CategoricalDtype) and _holds_strings(
            pd.Series(series.cat.categories, dtype=object)
        )
        if not (_holds_strings(series) or text_categories):
            # Other values are matched by their text, as normalise_frame gives it; converting
            # first keeps values that compare equal (1, 1.0, True) apart.
            series = pd.Series(categorical_text(series), dtype=object)
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        # The last entry is for code -1 (a missing value).
        return self.level_lookup(j, uniques)[codes]


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
    if kind is PowerTransformer:
        # scikit-learn calls scipy's transform per column; the same arithmetic on all columns at
        # once, without scipy's per-call overhead (bit for bit: tested against scipy).
        with np.errstate(over="ignore", invalid="ignore"):
            return yeojohnson(values, np.asarray(scaler.lambdas_, dtype=np.float64))
    return scaler.transform(values)


_EPS = np.finfo(np.float64).eps


def yeojohnson(x: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """(n, d) float64 and (d,) lambdas -> (n, d) float64: column j is
    ``scipy.stats.yeojohnson(x[:, j], lambdas[j])``, bit for bit.

    scipy's own elementwise operations in its order (each element meets the same ufuncs with
    the same operands), on every column at once instead of one call per column.
    """
    out = np.zeros_like(x)
    lam = np.broadcast_to(lambdas, x.shape)
    positive = x >= 0
    negative = ~positive
    near_zero = np.abs(lambdas) < _EPS
    near_two = ~(np.abs(lambdas - 2) > _EPS)
    general = positive & ~near_zero
    if general.any():
        g = lam[general]
        out[general] = np.expm1(g * np.log1p(x[general])) / g
    if near_zero.any():
        zero = positive & near_zero
        out[zero] = np.log1p(x[zero])
    general = negative & ~near_two
    if general.any():
        g = 2 - lam[general]
        out[general] = -np.expm1(g * np.log1p(-x[general])) / g
    if near_two.any():
        two = negative & near_two
        out[two] = -np.log1p(-x[two])
    return out
