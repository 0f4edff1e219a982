"""Drafting a suite: the data contract from reference batches, meant to be reviewed.

``draft_suite`` takes one reference batch or several. With several, every bound comes from
per-batch statistics, so it holds for each reference batch and not only for their sum: row-count
bounds from the fewest and the most rows of a batch, quantile ranges spanning each batch's
quantiles, null shares from the emptiest batch, a level-share (KL) threshold above each batch's
divergence from the pooled shares. Every reference batch passes the drafted suite.

An expectation that no batch could fail is dropped (and listed in the suite's
``meta.aeflow.dropped`` with the reason): a null check with ``mostly`` 0, a range or quantile
ranges covering the column type's whole domain (an int8 in [-128, 127], a boolean in [0, 1]), a
category set holding every value of a boolean, a KL threshold no distribution can exceed.
A column no reference holds a value of (Arrow's null type, as pandas writes an all-None
column) gets no type check, being of no known type: it is listed in
``meta.aeflow.untyped`` (a numeric column is still checked as numbers).
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.frames import null_missing_tokens
from tasks.settings import ColumnsSettings
from tasks.validation.outcome import jsonable
from tasks.validation.prechecks import decode_dictionaries
from tasks.validation.suite import NUMERIC_DTYPES


@dataclass(frozen=True)
class DraftSettings:
    """How `draft_suite` turns reference statistics into bounds (all shares are 0-1)."""

    range_quantiles: tuple[float, float] = (0.001, 0.999)  # robust min/max of numeric ranges
    range_margin: float = 0.1  # share of the robust span added on both sides of the range
    range_mostly: float = 0.99  # share of values that must fall inside the range
    null_margin: float = 0.01  # warning when null share > 2 x reference share + this (see below)
    null_guard_below: float = 0.25  # columns this complete get the critical "mostly empty" guard
    row_count_factor: float = 5.0  # warning outside [fewest rows / factor, most rows x factor]
    max_levels: int = 500  # no category set or KL check above this many levels
    quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
    quantile_margin: float = 0.1  # share of the 1%-99% span allowed around each quantile
    kl_threshold: float = 0.1  # nats; KL divergence of a batch's level shares from the reference
    kl_tail_weight: float = 0.01  # probability mass given to levels unseen in the reference

    def __post_init__(self) -> None:
        low, high = self.range_quantiles
        if not 0 <= low < high <= 1:
            raise ValueError(
                f"range_quantiles must satisfy 0 <= low < high <= 1, got {self.range_quantiles}"
            )
        for name in ("range_mostly", "kl_tail_weight", "null_guard_below"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        for name in ("range_margin", "null_margin", "quantile_margin", "kl_threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.row_count_factor < 1:
            raise ValueError(f"row_count_factor must be >= 1, got {self.row_count_factor}")
        if self.max_levels < 1:
            raise ValueError(f"max_levels must be >= 1, got {self.max_levels}")
        if not self.quantiles or any(not 0 < q < 1 for q in self.quantiles):
            raise ValueError(f"quantiles must be in (0, 1), got {self.quantiles}")


def _round_outward(value: float, up: bool, digits: int = 6) -> float:
    """``value`` rounded to ``digits`` significant digits, away from the inside of a bound.

    Decimal arithmetic on the float's shortest repr, so 23.4 stays 23.4 and -1.0 stays -1.0.
    """
    if value == 0 or not math.isfinite(value):
        return float(value)
    exact = Decimal(repr(float(value)))
    step = Decimal(1).scaleb(exact.adjusted() - (digits - 1))
    rounded = float(exact.quantize(step, rounding=ROUND_CEILING if up else ROUND_FLOOR))
    # The decimal bound is exact; its nearest float can sit a hair inside it.
    if (up and rounded < value) or (not up and rounded > value):
        rounded = math.nextafter(rounded, math.inf if up else -math.inf)
    return rounded


def _floor_share(value: float) -> float:
    """A `mostly` share rounded down to 4 decimals (never stricter than computed)."""
    return max(0.0, math.floor(value * 10_000) / 10_000)


def _type_check(arrow_type: pa.DataType, numeric_role: bool) -> tuple[str, dict[str, Any], str]:
    """(expectation type, kwargs, description) of the type check for a column."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if numeric_role or pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return (
            "expect_column_values_to_be_in_type_list",
            {"type_list": list(NUMERIC_DTYPES)},
            "numbers (any int or float width)",
        )
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "expect_column_values_to_be_of_type", {"type_": "str"}, "text"
    if pa.types.is_timestamp(arrow_type):
        if arrow_type.tz is not None:
            return (
                "expect_column_values_to_be_of_type",
                {"type_": "Timestamp"},
                "timestamps with a time zone",
            )
        return (
            "expect_column_values_to_be_of_type",
            {"type_": "datetime64"},
            "timestamps without a time zone",
        )
    if pa.types.is_date(arrow_type):
        return "expect_column_values_to_be_of_type", {"type_": "datetime64"}, "dates"
    if pa.types.is_boolean(arrow_type):
        return "expect_column_values_to_be_of_type", {"type_": "bool"}, "booleans"
    raise ValueError(
        f"cannot draft a type check for Arrow type {arrow_type}; convert the reference column to "
        "numbers, text, timestamps or booleans"
    )


def _expectation(kind: str, severity: str, why: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "severity": severity, "meta": {"why": why}}


def _level_counts(column: pa.ChunkedArray) -> list[tuple[Any, int]]:
    """(level, count) of the non-null values, sorted by level."""
    counts = pc.value_counts(column.drop_null()).to_pylist()
    return sorted(((c["values"], c["counts"]) for c in counts), key=lambda item: str(item[0]))


def _partition_weights(counts: list[int]) -> list[float]:
    """Shares rounded to 6 decimals that still sum to 1 (the largest absorbs the rounding)."""
    total = sum(counts)
    weights = [round(c / total, 6) for c in counts]
    largest = int(np.argmax(weights))
    weights[largest] = round(weights[largest] + (1.0 - sum(weights)), 6)
    return weights


def _present(values: pd.Series) -> pd.Series:
    values = values.dropna()
    return values[np.isfinite(values)]


def _numeric_checks(
    name: str, batches: Sequence[pd.Series], settings: DraftSettings
) -> list[dict[str, Any]]:
    """Robust range (from the pooled values) and quantile ranges (spanning each batch's
    quantiles) of a numeric column, both warnings; ``batches`` holds the column of each
    reference batch."""
    checks: list[dict[str, Any]] = []
    per_batch = [p for p in (_present(v) for v in batches) if not p.empty]
    if not per_batch:
        return checks
    present = pd.concat(per_batch, ignore_index=True)
    integral = bool((present == np.round(present)).all())
    low_q, high_q = settings.range_quantiles
    low, high = (float(v) for v in present.quantile([low_q, high_q], interpolation="nearest"))
    span = high - low
    low, high = low - settings.range_margin * span, high + settings.range_margin * span
    if float(present.min()) >= 0:
        low = max(low, 0.0)  # a column never negative in the reference stays non-negative
    if integral:
        low, high = float(math.floor(low)), float(math.ceil(high))
    checks.append(
        _expectation(
            "expect_column_values_to_be_between",
            "warning",
            f"robust range: reference quantiles {low_q:g}-{high_q:g} widened by "
            f"{settings.range_margin:g} of their span on each side",
            column=name,
            min_value=_round_outward(low, up=False),
            max_value=_round_outward(high, up=True),
            mostly=settings.range_mostly,
        )
    )
    quantiles = list(settings.quantiles)
    observed = np.array(
        [p.quantile(quantiles, interpolation="nearest").to_numpy(dtype=float) for p in per_batch]
    )
    q01, q99 = (float(v) for v in present.quantile([0.01, 0.99], interpolation="nearest"))
    margin = settings.quantile_margin * (q99 - q01)
    if integral:
        # Quantiles of counts move in whole steps between batches: allow at least one step.
        margin = max(margin, 1.0)
    floor = 0.0 if float(present.min()) >= 0 else -math.inf
    ranges = [
        [_round_outward(max(lo - margin, floor), up=False), _round_outward(hi + margin, up=True)]
        for lo, hi in zip(observed.min(axis=0), observed.max(axis=0), strict=True)
    ]
    spread = "each reference batch's quantiles" if len(per_batch) > 1 else "reference quantiles"
    checks.append(
        _expectation(
            "expect_column_quantile_values_to_be_between",
            "warning",
            f"distribution: {spread} +- {settings.quantile_margin:g} of the 1%-99% span",
            column=name,
            quantile_ranges={"quantiles": quantiles, "value_ranges": ranges},
        )
    )
    return checks


def _kl_divergence(
    counts: dict[Any, int], values: Sequence[Any], weights: Sequence[float]
) -> float:
    """KL divergence (nats) of a batch's level shares from the partition ``values``/``weights``,
    as GX computes it for a batch whose levels are all in the partition."""
    total = sum(counts.values())
    divergence = 0.0
    for value, weight in zip(values, weights, strict=True):
        share = counts.get(value, 0) / total if total else 0.0
        if share > 0:
            divergence += share * math.log(share / weight)
    return divergence


def _categorical_checks(
    name: str, columns: Sequence[pa.ChunkedArray], settings: DraftSettings, distribution: bool
) -> list[dict[str, Any]]:
    """Category set (the levels of every reference batch) and level shares (pooled, with a KL
    threshold above each batch's divergence from them), both warnings, when the column has few
    enough levels; ``columns`` holds the column of each reference batch."""
    levels = _level_counts(
        pa.chunked_array([c for col in columns for c in col.chunks], columns[0].type)
    )
    if not levels or len(levels) > settings.max_levels:
        return []
    values = [jsonable(level) for level, _ in levels]
    checks = [
        _expectation(
            "expect_column_values_to_be_in_set",
            "warning",
            "levels seen in the reference; the model handles unseen levels, so this only warns",
            column=name,
            value_set=values,
        )
    ]
    if distribution and len(levels) > 1:
        weights = _partition_weights([count for _, count in levels])
        raw_levels = [level for level, _ in levels]
        worst = max(
            _kl_divergence(dict(_level_counts(column)), raw_levels, weights) for column in columns
        )
        # Twice the largest divergence of a reference batch: each passes with room to spare.
        threshold = max(settings.kl_threshold, _round_outward(2 * worst, up=True, digits=2))
        why = (
            f"level shares: KL divergence from the reference below {threshold:g} nats "
            f"({settings.kl_tail_weight:g} of the mass reserved for unseen levels)"
        )
        if threshold > settings.kl_threshold:
            why += f"; raised from {settings.kl_threshold:g} to twice the largest of the reference batches"
        checks.append(
            _expectation(
                "expect_column_kl_divergence_to_be_less_than",
                "warning",
                why,
                column=name,
                partition_object={"values": values, "weights": weights},
                threshold=threshold,
                tail_weight_holdout=settings.kl_tail_weight,
                bucketize_data=False,
            )
        )
    return checks


# ----------------------------------------------------------------------------- cannot fail
def _type_domain(arrow_type: pa.DataType) -> tuple[float, float] | None:
    """The smallest and largest value a column of this type can hold (integers, booleans)."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_boolean(arrow_type):
        return 0.0, 1.0
    if pa.types.is_integer(arrow_type):
        info = np.iinfo(arrow_type.to_pandas_dtype())
        return float(info.min), float(info.max)
    return None


def cannot_fail(expectation: dict[str, Any], arrow_type: pa.DataType | None) -> str | None:
    """Why no batch could fail ``expectation`` (a column of ``arrow_type``), or None."""
    kind, kwargs = expectation["type"], expectation["kwargs"]
    domain = _type_domain(arrow_type) if arrow_type is not None else None

    def covers(low: Any, high: Any) -> bool:
        return (
            domain is not None
            and (low is None or low <= domain[0])
            and (high is None or high >= domain[1])
        )

    if kind == "expect_column_values_to_not_be_null" and kwargs.get("mostly", 1.0) <= 0:
        return "mostly 0: any share of nulls passes"
    if kind == "expect_column_values_to_be_between" and covers(
        kwargs.get("min_value"), kwargs.get("max_value")
    ):
        return f"the range covers every value of the column's type {arrow_type}"
    if (
        kind == "expect_column_quantile_values_to_be_between"
        and all(covers(low, high) for low, high in kwargs["quantile_ranges"]["value_ranges"])
        and domain is not None
    ):
        return f"every quantile range covers every value of the column's type {arrow_type}"
    if (
        kind == "expect_column_values_to_be_in_set"
        and arrow_type is not None
        and pa.types.is_boolean(arrow_type)
        and {True, False} <= set(kwargs["value_set"])
    ):
        return "the set holds both boolean values"
    if kind == "expect_column_kl_divergence_to_be_less_than":
        tail = kwargs.get("tail_weight_holdout") or 0.0
        shares = [w * (1 - tail) for w in kwargs["partition_object"]["weights"]]
        if tail > 0:
            shares.append(tail)
        if kwargs["threshold"] >= max(-math.log(s) for s in shares if s > 0):
            return "the threshold is above the largest divergence any batch could reach"
    return None


# ---------------------------------------------------------------------------------- drafting
def _null_allowance(null_share: float, margin: float) -> float:
    """The null share a batch may reach before the warning: twice the reference's plus
    ``margin``, but at most half of what is left, so a column half empty in the reference can
    still warn when it empties further."""
    return min(2 * null_share + margin, null_share + 0.5 * (1 - null_share))


def _check_reference(
    table: pa.Table, roles: Sequence[str | None], id_column: str, where: str
) -> None:
    present = table.schema.names
    missing = [c for c in roles if c is not None and c not in present]
    if missing:
        raise ValueError(
            f"{where} lacks column(s) {missing} named in the config; present: {present}"
        )
    if table.num_rows == 0:
        raise ValueError(f"{where} has no rows; draft from batches with typical data")
    ids = table.column(id_column)
    if ids.null_count:
        raise ValueError(f"{where} has {ids.null_count} null id(s) in {id_column!r}")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        raise ValueError(
            f"{where} has duplicate ids in {id_column!r}; ids must be unique per batch"
        )


def draft_suite(
    reference: pa.Table | Sequence[pa.Table],
    *,
    name: str,
    columns: ColumnsSettings,
    references: Sequence[str] = (),
    settings: DraftSettings | None = None,
) -> dict[str, Any]:
    """A suite (GX 1.x JSON document) named ``name`` (the dataset), drafted from reference
    batches, meant to be reviewed.

    ``reference`` is one batch (a table) or several (a list of tables with one layout; bounds
    then come from per-batch statistics, see the module docstring). ``references`` names them in
    the suite's meta. ``columns`` gives the roles (id, timestamp, features) and the missing-value
    tokens. The label column may be missing from the references; it is recorded as optional (a
    batch may have it or not).

    Critical: the exact column set, a non-empty batch, each column's type, id uniqueness, no nulls
    in key columns (id, timestamp), no column more than half empty. Warnings: null shares with
    `mostly`, row-count bounds, robust numeric ranges, quantiles, category sets and level shares
    (KL divergence). Each reference batch must meet the critical checks itself.
    """
    settings = settings or DraftSettings()
    id_column, timestamp_column, label_column = columns.id, columns.timestamp, columns.label
    numeric, categorical = columns.numeric, columns.categorical
    missing_tokens = columns.missing_values
    tables = [reference] if isinstance(reference, pa.Table) else list(reference)
    if not tables:
        raise ValueError("draft_suite needs at least one reference batch")
    present = tables[0].schema.names
    roles = [id_column, timestamp_column, *numeric, *categorical]
    for position, table in enumerate(tables):
        where = "the reference batch" if len(tables) == 1 else f"reference batch {position + 1}"
        if table.schema.names != present:
            raise ValueError(f"{where} has columns {table.schema.names}, the first has {present}")
        _check_reference(table, roles, id_column, where)
    tables = [null_missing_tokens(decode_dictionaries(t), missing_tokens) for t in tables]
    counts = [t.num_rows for t in tables]
    rows = sum(counts)
    size = (
        f"the reference's {rows}"
        if len(tables) == 1
        else f"{min(counts)}-{max(counts)} per reference batch"
    )
    expectations = [
        _expectation(
            "expect_table_columns_to_match_set",
            "critical",
            "exact column set: a missing, extra or renamed column breaks the contract",
            column_set=list(present),
            exact_match=True,
        ),
        _expectation(
            "expect_table_row_count_to_be_between",
            "critical",
            "a batch without rows is a failed export",
            min_value=1,
        ),
        _expectation(
            "expect_table_row_count_to_be_between",
            "warning",
            f"row count within a factor {settings.row_count_factor:g} of {size}",
            min_value=int(min(counts) // settings.row_count_factor),
            max_value=int(math.ceil(max(counts) * settings.row_count_factor)),
        ),
    ]
    types: dict[str | None, pa.DataType | None] = {None: None}
    key_columns = {id_column, timestamp_column} - {None}
    untyped = []  # no reference holds a value of these: their type is unknown
    for column_name in present:
        columns = [t.column(column_name) for t in tables]
        typed = [c.type for c in columns if not pa.types.is_null(c.type)]
        types[column_name] = typed[0] if typed else columns[0].type
        if typed or column_name in numeric:
            try:
                kind, kwargs, described = _type_check(types[column_name], column_name in numeric)
            except ValueError as exc:
                raise ValueError(f"column {column_name!r}: {exc}") from None
            expectations.append(
                _expectation(kind, "critical", f"type: {described}", column=column_name, **kwargs)
            )
        else:
            untyped.append(column_name)
        null_share = max(c.null_count / len(c) for c in columns)
        emptiest = "the reference's" if len(tables) == 1 else "the emptiest reference batch's"
        if column_name in key_columns:
            expectations.append(
                _expectation(
                    "expect_column_values_to_not_be_null",
                    "critical",
                    "key column: every row needs it",
                    column=column_name,
                    mostly=_floor_share(1 - null_share) if null_share else 1.0,
                )
            )
        else:
            if null_share < settings.null_guard_below:
                expectations.append(
                    _expectation(
                        "expect_column_values_to_not_be_null",
                        "critical",
                        "more than half the values the reference had are missing: a broken feed",
                        column=column_name,
                        mostly=_floor_share(0.5 * (1 - null_share)),
                    )
                )
            if all(c.null_count == len(c) for c in columns):
                expectations.append(
                    _expectation(
                        "expect_column_values_to_be_null",
                        "warning",
                        "no reference holds a value: values arriving here are new to the model, "
                        "which learnt nothing from this column",
                        column=column_name,
                    )
                )
            allowed = _null_allowance(null_share, settings.null_margin)
            rule = f"2 x {emptiest} ({null_share:.4f}) + {settings.null_margin:g}"
            if allowed < 2 * null_share + settings.null_margin:
                rule = f"{emptiest} ({null_share:.4f}) + half of the rest"
            expectations.append(
                _expectation(
                    "expect_column_values_to_not_be_null",
                    "warning",
                    f"null share at most {rule}",
                    column=column_name,
                    mostly=_floor_share(1 - allowed),
                )
            )
        if column_name == id_column:
            expectations.append(
                _expectation(
                    "expect_column_values_to_be_unique",
                    "critical",
                    "row ids identify scored rows: duplicates would be scored twice",
                    column=column_name,
                )
            )
        elif column_name in numeric:
            values = [c.cast(pa.float64()).to_pandas() for c in columns]
            expectations += _numeric_checks(column_name, values, settings)
        elif column_name in categorical or column_name == label_column:
            expectations += _categorical_checks(
                column_name, columns, settings, distribution=column_name in categorical
            )
    kept, dropped = [], []
    for expectation in expectations:
        column = expectation["kwargs"].get("column")
        why = cannot_fail(expectation, types.get(column))
        if why is None:
            kept.append(expectation)
        else:
            dropped.append({"type": expectation["type"], "column": column, "why": why})
    meta = {
        "aeflow": {
            "dataset": name,
            "drafted_by": "aeflow expectations init",
            "drafted_from": [posixpath.basename(str(r).rstrip("/")) for r in references],
            "reference_rows": rows,
            "optional_columns": [label_column] if label_column else [],
            "settings": jsonable(asdict(settings)),
        },
        "great_expectations_version": _gx_version(),
    }
    if len(tables) > 1:
        meta["aeflow"]["reference_batch_rows"] = counts
    if dropped:
        meta["aeflow"]["dropped"] = dropped
    if untyped:
        meta["aeflow"]["untyped"] = untyped
    return {
        "name": name,
        "expectations": kept,
        "meta": meta,
        "notes": (
            "Drafted from reference batches: review every bound before committing. Severity "
            "'critical' quarantines a batch, 'warning' lets it be scored and is reported."
        ),
    }


def _gx_version() -> str:
    from importlib.metadata import version

    return version("great-expectations")


def suite_json(suite: dict[str, Any]) -> str:
    """Stable, diff-friendly JSON text of a suite (sorted keys, two-space indent, final newline)."""
    return json.dumps(jsonable(suite), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
