"""The input contract of the online service: the columns, types, levels and nulls a request may carry.

A request's rows become the Arrow record batch that batch scoring would have read from a Parquet
file (the same column types), so the scoring code that follows is the batch pipeline's own. Before
that, every rule is checked and every broken one is reported at once, as an :class:`InputError`
listing one :class:`InputProblem` per column and rule: the column, the rule, the fix and the rows.

The rules come from the model and the data contract:

- every feature column the model was trained on must be present (extra columns are ignored);
- numeric columns hold numbers (integers or floats) or null; categorical columns hold text, or
  integers / booleans, which are read as their text as batch scoring reads them;
- a categorical level the model never saw is refused unless the request asks to score it as batch
  scoring does (``unseen="score"``: the rare-level group, or as costly as the least likely level);
- null (NaN and infinities count as null, as in batch scoring) is refused where the suite's
  ``expect_column_values_to_not_be_null`` allows none (``mostly`` 1, severity critical): a single
  row cannot satisfy a share, so only the absolute rule applies online;
- for ``/decode``, every ``z_i`` column must hold a finite number.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.preprocessing import MISSING_LEVEL
from tasks.frames import null_tokens, token_array

UNSEEN_POLICIES = ("reject", "score")
# Row numbers named per problem; the count says how many there were in all.
ROWS_SHOWN = 5
LEVELS_SHOWN = 12
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class InputProblem:
    """One broken rule: ``column`` (None for the body as a whole), ``rule`` (what is required and
    what was found), ``fix`` (what to send instead), ``rows`` (0-based row numbers, first few) and
    ``n_rows`` (how many rows break it; None when it is the column as a whole)."""

    column: str | None
    rule: str
    fix: str
    rows: tuple[int, ...] = ()
    n_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"column": self.column, "rule": self.rule, "fix": self.fix}
        if self.n_rows is not None:
            out["rows"] = list(self.rows)
            out["n_rows"] = self.n_rows
        return out


class InputError(ValueError):
    """A request whose rows break the input contract (HTTP 422); ``problems`` lists each."""

    def __init__(self, problems: Sequence[InputProblem]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{p.column}: {p.rule}" for p in self.problems))


@dataclass(frozen=True)
class ColumnRule:
    """What one column may hold: ``kind`` is "numeric", "categorical", "passthrough" (id and
    timestamp: echoed when sent) or "latent" (``z_i`` for /decode); ``not_null`` is the reason
    the data contract gives for refusing nulls, or None when they are allowed; ``levels`` are the
    categorical levels seen in training."""

    name: str
    kind: str
    not_null: str | None = None
    levels: frozenset[str] = field(default_factory=frozenset)

    @functools.cached_property
    def known(self) -> pa.Array:
        """The known levels as an Arrow array (built once, for ``pc.is_in``)."""
        return pa.array(sorted(self.levels), type=pa.string())

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        out["nullable"] = self.not_null is None
        if self.kind == "categorical":
            out["levels"] = sorted(self.levels)
        return out


def _rows(mask: np.ndarray) -> tuple[tuple[int, ...], int]:
    where = np.flatnonzero(mask)
    return tuple(int(i) for i in where[:ROWS_SHOWN]), int(where.size)


def _shown(values: Sequence[str], limit: int = LEVELS_SHOWN) -> str:
    values = list(values)
    head = ", ".join(repr(v) for v in values[:limit])
    return head + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _type_name(arrow_type: pa.DataType) -> str:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    if pa.types.is_boolean(arrow_type):
        return "booleans"
    if pa.types.is_struct(arrow_type) or pa.types.is_map(arrow_type):
        return "objects"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return "lists"
    return str(arrow_type)


def _is_number_type(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
        or pa.types.is_null(arrow_type)
    )


def _is_level_type(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_integer(arrow_type)
        or pa.types.is_boolean(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_null(arrow_type)
    )


def _null_mask(column: pa.Array) -> np.ndarray:
    """(n,) bool: null, NaN or infinite (batch scoring treats all three as missing)."""
    missing = pc.is_null(column, nan_is_null=True)
    if pa.types.is_floating(column.type):
        missing = pc.or_(missing, pc.fill_null(pc.is_inf(column), False))
    return missing.to_numpy(zero_copy_only=False)


def not_null_reasons(suite: Any) -> dict[str, str]:
    """{column: the suite's reason} for each column whose critical
    ``expect_column_values_to_not_be_null`` allows no null (``mostly`` absent or 1)."""
    reasons: dict[str, str] = {}
    for check in getattr(suite, "checks", ()):
        if check.type != "expect_column_values_to_not_be_null" or check.severity != "critical":
            continue
        if float(check.kwargs.get("mostly", 1.0) or 1.0) >= 1.0 and check.column:
            why = (check.meta or {}).get("why") or "the data contract allows no missing value"
            reasons[check.column] = f"{why} ({posixpath.basename(str(suite.path))})"
    return reasons


@dataclass(frozen=True)
class InputContract:
    """The rules for the feature, passthrough and latent columns of one served model."""

    features: tuple[ColumnRule, ...]
    passthrough: tuple[ColumnRule, ...]
    latent: tuple[ColumnRule, ...]
    missing_tokens: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        detector: Any,
        passthrough: Sequence[str] = (),
        not_null: Mapping[str, str] | None = None,
        missing_tokens: Sequence[str] = (),
    ) -> InputContract:
        """The contract of a fitted detector; ``not_null`` from :func:`not_null_reasons`."""
        not_null = dict(not_null or {})
        levels = _known_levels(detector)
        features = tuple(
            ColumnRule(name, "numeric", not_null.get(name)) for name in detector.numeric_columns_
        ) + tuple(
            ColumnRule(name, "categorical", not_null.get(name), levels[name])
            for name in detector.categorical_columns_
        )
        latent = tuple(
            ColumnRule(f"z_{i}", "latent", "a code to decode needs every z value")
            for i in range(int(detector.latent_dim_))
        )
        kept = tuple(ColumnRule(name, "passthrough", not_null.get(name)) for name in passthrough)
        return cls(features, kept, latent, tuple(missing_tokens))

    @functools.cached_property
    def token_set(self) -> pa.Array | None:
        """The missing-value tokens as an Arrow array (None: no tokens), built once."""
        return token_array(self.missing_tokens)

    @property
    def numeric(self) -> list[str]:
        return [r.name for r in self.features if r.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [r.name for r in self.features if r.kind == "categorical"]

    def wanted(self, latent: bool = False) -> list[ColumnRule]:
        """The rules of the columns a request is read for: passthrough, then features or z."""
        return [*self.passthrough, *(self.latent if latent else self.features)]

    def check(
        self,
        table: pa.Table,
        *,
        latent: bool = False,
        unseen: str = "reject",
        found: Sequence[InputProblem] = (),
    ) -> pa.RecordBatch:
        """The request's rows as one record batch of the columns it is read for (passthrough
        columns only when sent), in the types they arrived in; :class:`InputError` listing every
        broken rule otherwise, with the problems ``found`` while reading the body."""
        problems: list[InputProblem] = []
        present = set(table.column_names)
        earlier = {problem.column: problem for problem in found}
        names, arrays = [], []
        for rule in self.wanted(latent):
            if rule.name in earlier:
                problems.append(earlier[rule.name])
                continue
            if rule.name not in present:
                if rule.kind != "passthrough":
                    problems.append(_missing_column(rule))
                continue
            chunked = table.column(rule.name)
            column = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            found = _check_column(rule, column, self.token_set, unseen)
            problems += found
            names.append(rule.name)
            arrays.append(column)
        if problems:
            raise InputError(problems)
        return pa.RecordBatch.from_arrays(arrays, names=names)


def _known_levels(detector: Any) -> dict[str, frozenset[str]]:
    """{categorical column: the levels seen in training} (rare ones included, "missing" not)."""
    if not detector.categorical_columns_:
        return {}
    encoder = detector.preprocessor_.named_transformers_["categorical"]
    return {
        name: frozenset(str(v) for v in seen if str(v) != MISSING_LEVEL)
        for name, seen in zip(detector.categorical_columns_, encoder.categories_, strict=True)
    }


def _missing_column(rule: ColumnRule) -> InputProblem:
    what = {
        "numeric": "a numeric feature column of the model",
        "categorical": "a categorical feature column of the model",
        "latent": "an encoded feature: /decode needs every z_i of the model",
    }[rule.kind]
    return InputProblem(
        rule.name,
        f"required: {what}; the request has no column {rule.name!r}",
        f"send {rule.name!r} in every row (GET /model lists the columns)",
    )


def _check_column(
    rule: ColumnRule, column: pa.Array, token_set: pa.Array | None, unseen: str
) -> list[InputProblem]:
    """The rules ``column`` breaks (empty when none)."""
    kind, name = rule.kind, rule.name
    if kind in ("numeric", "latent") and not _is_number_type(column.type):
        return [
            InputProblem(
                name,
                f"{'numeric' if kind == 'numeric' else 'encoded feature'}: numbers or null only, "
                f"got {_type_name(column.type)}",
                f"send {name!r} as JSON numbers (not quoted), or a numeric Arrow/Parquet column",
                *_rows(np.ones(len(column), bool)),
            )
        ]
    if kind == "categorical" and not _is_level_type(column.type):
        return [
            InputProblem(
                name,
                f"categorical: text levels only, got {_type_name(column.type)}",
                f"send the level of {name!r} as text, e.g. {next(iter(sorted(rule.levels)), 'x')!r}",
                *_rows(np.ones(len(column), bool)),
            )
        ]
    problems: list[InputProblem] = []
    missing = None
    if kind == "categorical":
        levels = column if pa.types.is_string(column.type) else column.cast(pa.string())
        if token_set is not None:
            levels = null_tokens(levels, token_set)
        if unseen == "reject" and rule.levels:
            new = ~pc.is_in(levels, value_set=rule.known).to_numpy(zero_copy_only=False)
            if levels.null_count:
                new &= ~levels.is_null().to_numpy(zero_copy_only=False)
            if new.any():
                first = levels.filter(pa.array(new)).unique().to_pylist()
                problems.append(
                    InputProblem(
                        name,
                        f"known levels only: {_shown(first, 3)} never appeared in training "
                        f"(known: {_shown(sorted(rule.levels))})",
                        "send a known level, or add ?unseen=score to score it as batch scoring "
                        "does (as the rare-level group, or as costly as the least likely level)",
                        *_rows(new),
                    )
                )
        if rule.not_null is not None and levels.null_count:
            missing = levels.is_null().to_numpy(zero_copy_only=False)
    elif rule.not_null is not None:
        missing = _null_mask(column)
    if kind == "latent":
        problems += _beyond_float32(name, column)
    if missing is not None and missing.any():
        problems.append(
            InputProblem(
                name,
                f"not null: {rule.not_null}; got null, NaN or infinity",
                f"send a value for {name!r} in every row",
                *_rows(missing),
            )
        )
    return problems


def _beyond_float32(name: str, column: pa.Array) -> list[InputProblem]:
    """The network decodes in float32: a finite code beyond its range would become infinity."""
    if not pa.types.is_floating(column.type) and not pa.types.is_decimal(column.type):
        return []
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        beyond = np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)
    if not beyond.any():
        return []
    return [
        InputProblem(
            name,
            f"encoded feature: a float32 number (|z| <= {FLOAT32_MAX:.4g}); got "
            f"{values[beyond][0]:.4g}",
            f"send {name!r} as /encode and `aeflow score` write it (z values are float32)",
            *_rows(beyond),
        )
    ]


def table_from_records(
    records: Sequence[Mapping[str, Any]], rules: Sequence[ColumnRule]
) -> tuple[pa.Table, list[InputProblem]]:
    """JSON records (a list of objects) -> (an Arrow table of the columns ``rules`` name that the
    records carry, each typed by Arrow's inference as a Parquet writer would type it (a key absent
    from some rows is null there), the problems of the columns left out because they mix types).
    A record that is not an object is an :class:`InputError`."""
    problems, names, arrays = [], [], []
    for position, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InputError(
                [
                    InputProblem(
                        None,
                        f"a JSON body is one row (an object) or a list of rows (objects); row "
                        f"{position} is {type(record).__name__}",
                        'send {"column": value, ...} or [{"column": value, ...}, ...]',
                        (position,),
                        1,
                    )
                ]
            )
    for rule in rules:
        if not any(rule.name in record for record in records):
            continue
        values = [record.get(rule.name) for record in records]
        try:
            array = pa.array(values)
        except UnicodeEncodeError:
            problems.append(_not_unicode(rule, values))
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            problems.append(_mixed_types(rule, values))
            continue
        names.append(rule.name)
        arrays.append(array)
    return (pa.Table.from_arrays(arrays, names=names) if names else pa.table({})), problems


def _mixed_types(rule: ColumnRule, values: Sequence[Any]) -> InputProblem:
    kinds = {type(v).__name__ for v in values if v is not None}
    if rule.kind in ("numeric", "latent"):
        odd = np.array([not _is_json_number(v) for v in values])
        fix = f"send {rule.name!r} as numbers (not quoted), or null for a missing value"
        rule_text = "numbers or null only"
    else:
        first = type(next(v for v in values if v is not None))
        odd = np.array([v is not None and not isinstance(v, first) for v in values])
        fix = f"send every level of {rule.name!r} as text"
        rule_text = "one type of level per column"
    return InputProblem(rule.name, f"{rule_text}, got a mix of {sorted(kinds)}", fix, *_rows(odd))


def _not_unicode(rule: ColumnRule, values: Sequence[Any]) -> InputProblem:
    """JSON text may escape half of a surrogate pair ("\\ud83d"): not Unicode, so not text."""
    odd = np.array([isinstance(v, str) and _has_lone_surrogate(v) for v in values])
    first = next(v for v, bad in zip(values, odd, strict=True) if bad)
    shown = ascii(next(c for c in first if 0xD800 <= ord(c) <= 0xDFFF))
    return InputProblem(
        rule.name,
        f"text must be Unicode; got a lone surrogate {shown} (half of an escaped pair)",
        f"send {rule.name!r} as UTF-8 text, escaping a character beyond U+FFFF as both halves "
        "of its pair",
        *_rows(odd),
    )


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _is_json_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))
