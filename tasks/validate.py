"""Validation: the data contract every batch meets before it is scored.

A batch goes through two stages. Pre-checks catch what Great Expectations cannot see or would crash
on: a zero-byte or truncated file, Parquet that cannot be read, a batch without rows, a required
column that is missing, a numeric column holding text or infinities. Then the suite in
``expectations/<dataset>.json`` runs on the batch (after the dataset's missing-value tokens are
turned into nulls) in an ephemeral GX context built for this call alone (GX contexts are not
thread-safe), one column at a time: GX copies the whole frame it is given for every row-level
metric, so per-column frames keep a 1M-row, 30-column batch within seconds.

Every expectation has a severity. A critical failure quarantines the batch with its report; warnings
let the batch be scored (or quarantine it when the config says ``on_warning = "quarantine"``) and are
logged, kept in the run summary and shown as Prefect artifacts. A batch is never dropped silently:
``quarantine`` keeps the untouched input next to report.json and report.md, and
``release_quarantined`` puts it back in incoming/ once the data or the suite is fixed.

The suite file is plain GX 1.x JSON (``name``, ``expectations`` with ``type``/``kwargs``/``severity``/
``meta``), drafted by ``tasks.suite_draft.draft_suite`` from reference batches and then reviewed
like code. GX drops an expectation it cannot build with only a log line, so ``suite_problems``
builds each one itself and reports unknown types and bad arguments as errors. Optional columns (the
label) may be present or absent in a batch (``Suite.for_batch``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import posixpath
import queue
import re
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.storage_errors import as_storage_error
from tasks.frames import null_missing_tokens, release_native_memory
from tasks.io import (
    BatchRef,
    StorageOptions,
    batch_files,
    count_rows,
    filesystem,
    is_local,
    join,
    open_input,
    open_parquet,
    storage_retry_options,
    write_text_atomic,
)
from tasks.markdown import md_code, md_text

SEVERITIES = ("critical", "warning")
ON_WARNING = ("score", "quarantine")

# pandas dtype names the numeric type check accepts: a whole-number column that gains a null
# arrives as float64, so numeric columns are checked as a family, not as one dtype.
NUMERIC_DTYPES = (
    "float64",
    "float32",
    "float16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint64",
    "uint32",
    "uint16",
    "uint8",
)

SUITE_KEYS = {"name", "expectations", "meta", "notes", "suite_parameters", "id"}
EXPECTATION_KEYS = {"type", "kwargs", "meta", "severity", "notes", "description", "id"}
COLUMN_KWARGS = ("column", "column_A", "column_B")

SAMPLE_SIZE = 5  # sample bad ids and values kept per failed check
# Row-level checks whose verdict on a row depends on that row's value alone, so the rows holding
# a sample unexpected value are the unexpected rows.
VALUE_DETERMINED = frozenset(
    {
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_strftime_format",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
    }
)
INDEX_META_KEY = "aeflow_index"  # added in memory only: maps GX results back to suite entries

logger = logging.getLogger(__name__)


class SuiteError(ValueError):
    """A suite file that cannot be used; the message lists every problem and how to fix it."""


class ReleaseError(ValueError):
    """A quarantined batch that cannot be released as asked; the message says why and what to do."""


# ================================================================================== the outcome
@dataclass
class ValidationOutcome:
    """What validation decided for one batch. JSON-able (``to_dict``); passed between tasks.

    ``critical`` and ``warnings`` hold one dict per failed check: ``type``, ``column``,
    ``severity``, ``expected``, ``observed``, ``unexpected_count``, ``unexpected_share`` (of the
    batch's rows, 0-1), ``sample_values``, ``sample_ids``, ``why`` and, when the check itself
    errored, ``error``.
    """

    batch_id: str
    status: str  # "passed" | "warning" | "quarantined"
    accepted: bool  # True: score the batch
    rows: (
        int | None
    )  # rows in the batch (Parquet footers when the data is unreadable; None: unknown)
    critical: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    suite: str = ""
    checks: int = 0  # expectations evaluated (pre-checks not counted)
    validated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationOutcome:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def report_markdown(self) -> str:
        """The outcome for people: a summary, then one table per severity. Every value from the
        data (batch id, columns, values, error messages) is escaped (tasks.markdown)."""
        title = {
            "passed": "passed",
            "warning": "scored with warnings",
            "quarantined": "quarantined",
        }
        rows = "unknown (the Parquet footer cannot be read)" if self.rows is None else self.rows
        lines = [
            f"# Batch {md_code(self.batch_id)}: {title.get(self.status, md_text(self.status))}",
            "",
            f"**{md_text(self.reason)}**",
            "",
            f"- rows: {rows}",
            f"- suite: {md_code(self.suite)} ({self.checks} checks evaluated)",
            f"- validated at: {md_text(self.validated_at)}",
            f"- critical failures: {len(self.critical)}; warnings: {len(self.warnings)}",
        ]
        for heading, failures in (
            ("Critical failures", self.critical),
            ("Warnings", self.warnings),
        ):
            if not failures:
                continue
            lines += [
                "",
                f"## {heading}",
                "",
                "| check | column | expected | observed | unexpected | sample ids |",
                "|---|---|---|---|---|---|",
            ]
            for failure in failures:
                lines.append(
                    "| "
                    + " | ".join(
                        md_text(cell)
                        for cell in (
                            failure["type"],
                            failure.get("column") or "",
                            _brief(failure.get("expected"), 160),
                            _brief(failure.get("error") or failure.get("observed"), 160),
                            _unexpected_text(failure),
                            _brief(failure.get("sample_ids") or "", 120),
                        )
                    )
                    + " |"
                )
            why = [
                f"- {md_code(f['type'])}"
                + (f" {md_code(f['column'])}" if f.get("column") else "")
                + f": {md_text(f['why'])}"
                for f in failures
                if f.get("why")
            ]
            if why:
                lines += ["", "Why these checks exist:", "", *why]
        return "\n".join(lines) + "\n"


def _unexpected_text(failure: dict[str, Any]) -> str:
    count = failure.get("unexpected_count")
    if count is None:
        return ""
    share = failure.get("unexpected_share")
    text = f"{count}" + (f" ({share * 100:.3g}%)" if isinstance(share, int | float) else "")
    if failure.get("sample_values"):
        text += " e.g. " + _brief(failure["sample_values"], 80)
    return text


def _brief(value: Any, limit: int) -> str:
    """A short one-line rendering of a JSON-able value."""
    if value is None or value == "":
        return ""
    text = value if isinstance(value, str) else json.dumps(_jsonable(value), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, non-finite floats as 'inf'/'-inf'/'nan'."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, dt.datetime | dt.date | pd.Timestamp):
        return value.isoformat()
    if value is pd.NaT:
        return None
    return str(value)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ===================================================================================== suites
@dataclass(frozen=True)
class Check:
    """One expectation of a suite, with the severity in force (after config overrides)."""

    index: int
    type: str
    kwargs: dict[str, Any]
    severity: str
    meta: dict[str, Any]

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column")

    def columns(self) -> list[str]:
        """Every column this check reads."""
        names = [self.kwargs[k] for k in COLUMN_KWARGS if isinstance(self.kwargs.get(k), str)]
        return names + [c for c in self.kwargs.get("column_list") or [] if isinstance(c, str)]

    def gx_configuration(self) -> Any:
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )

        return ExpectationConfiguration(
            type=self.type,
            kwargs=dict(self.kwargs),
            meta={**self.meta, INDEX_META_KEY: self.index},
            severity=self.severity,
        )


@dataclass(frozen=True)
class Suite:
    """A parsed, checked suite file."""

    name: str
    path: str
    checks: tuple[Check, ...]
    meta: dict[str, Any]

    def column_set(self) -> list[str] | None:
        """The exact column set the suite demands, when it has such a check."""
        for check in self.checks:
            if check.type == "expect_table_columns_to_match_set":
                return list(check.kwargs.get("column_set") or [])
        return None

    def referenced_columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for check in self.checks:
            for name in check.columns():
                seen.setdefault(name)
        return list(seen)

    def optional_columns(self) -> list[str]:
        """Columns a batch may have or lack (the label): ``meta.aeflow.optional_columns``."""
        return list((self.meta.get("aeflow") or {}).get("optional_columns") or [])

    def for_batch(self, present: Sequence[str], optional: Sequence[str] = ()) -> Suite:
        """This suite for a batch whose columns are ``present``: the checks of an optional column
        the batch lacks are left out, and the exact column set accepts each optional column
        whether the batch has it or not (``optional`` adds to :meth:`optional_columns`)."""
        optional = list(dict.fromkeys([*self.optional_columns(), *optional]))
        absent = {c for c in optional if c not in present}
        had = [c for c in optional if c in present]
        checks = []
        for check in self.checks:
            if check.type == "expect_table_columns_to_match_set":
                wanted = [c for c in check.kwargs.get("column_set") or [] if c not in absent]
                wanted += [c for c in had if c not in wanted]
                check = replace(check, kwargs={**check.kwargs, "column_set": wanted})
            elif absent.intersection(check.columns()):
                continue
            checks.append(check)
        return replace(self, checks=tuple(checks))


_GX_IMPORT_LOCK = threading.Lock()


def _gx_environment() -> None:
    """Analytics off before GX is imported (it reads the variable at import time), then GX and its
    expectation registry imported once, by one thread: validations start on several task threads
    at once, and two threads importing GX together can leave one with a half-filled registry (every
    expectation type "unknown")."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    with _GX_IMPORT_LOCK:
        import great_expectations  # noqa: F401
        import great_expectations.expectations  # noqa: F401  (registers the core expectations)


def suite_problems(data: Any) -> list[str]:
    """Every problem with a parsed suite JSON document; empty when the suite is usable.

    Checks the layout (GX 1.x keys), that each expectation type exists in GX and accepts its
    kwargs (GX itself would drop such an expectation with only a log line), and that each severity
    is critical or warning.
    """
    if not isinstance(data, dict):
        return [
            f"the top level must be an object with 'name' and 'expectations', got {type(data).__name__}"
        ]
    problems = []
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        problems.append(f"unknown top-level key(s) {unknown}; allowed: {sorted(SUITE_KEYS)}")
    if not isinstance(data.get("name"), str) or not data.get("name"):
        problems.append("'name' must be a non-empty string (the dataset name)")
    expectations = data.get("expectations")
    if not isinstance(expectations, list):
        return [*problems, "'expectations' must be a list of expectation objects"]
    if not expectations:
        problems.append("'expectations' is empty: a suite that checks nothing accepts any batch")
    _gx_environment()
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    for position, entry in enumerate(expectations):
        where = f"expectations[{position}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be an object, got {type(entry).__name__}")
            continue
        kind = entry.get("type")
        where = f"{where} ({kind})" if isinstance(kind, str) else where
        if "expectation_type" in entry:
            problems.append(f"{where}: 'expectation_type' is GX 0.x; GX 1.x names it 'type'")
        extra = sorted(set(entry) - EXPECTATION_KEYS - {"expectation_type"})
        if extra:
            problems.append(f"{where}: unknown key(s) {extra}; allowed: {sorted(EXPECTATION_KEYS)}")
        if not isinstance(kind, str) or not kind:
            problems.append(
                f"{where}: 'type' must name an expectation, e.g. 'expect_column_to_exist'"
            )
            continue
        severity = entry.get("severity", "critical")
        if severity not in SEVERITIES:
            problems.append(
                f"{where}: severity must be one of {list(SEVERITIES)}, got {severity!r}"
            )
            severity = "critical"
        kwargs = entry.get("kwargs", {})
        if not isinstance(kwargs, dict):
            problems.append(f"{where}: 'kwargs' must be an object, got {type(kwargs).__name__}")
            continue
        if "result_format" in kwargs or "catch_exceptions" in kwargs:
            problems.append(f"{where}: remove result_format/catch_exceptions; aeflow sets them")
        try:
            ExpectationConfiguration(
                type=kind, kwargs=dict(kwargs), meta=entry.get("meta") or {}, severity=severity
            ).to_domain_obj()
        except Exception as exc:  # GX raises several unrelated types for a bad entry
            message = " ".join(str(exc).split())
            if type(exc).__name__ == "ExpectationNotFoundError":
                message = "unknown expectation type (not in great_expectations 1.x)"
            problems.append(f"{where}: {message}")
    return problems


def read_suite_document(path: str, options: StorageOptions = None) -> Any:
    fs, inner = filesystem(path, options)
    try:
        with fs.open(inner, "rb") as handle:
            text = handle.read().decode("utf-8")
    except FileNotFoundError:
        raise SuiteError(
            f"suite file {path} does not exist; draft one with `aeflow expectations init "
            "--config FILE --reference BATCH`"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SuiteError(f"suite file {path} is not valid JSON: {exc}") from None


def _override_for(overrides: dict[str, str], kind: str, column: str | None) -> str | None:
    if column is not None and f"{kind}:{column}" in overrides:
        return overrides[f"{kind}:{column}"]
    return overrides.get(kind)


def load_suite(
    path: str,
    severity_overrides: dict[str, str] | None = None,
    options: StorageOptions = None,
) -> Suite:
    """Read and check a suite file; raises SuiteError listing every problem.

    ``severity_overrides`` maps an expectation type, or ``type:column``, to "critical" or "warning"
    (the config's ``validation.severity``); the more specific key wins.
    """
    data = read_suite_document(path, options)
    problems = suite_problems(data)
    overrides = dict(severity_overrides or {})
    bad = sorted(v for v in overrides.values() if v not in SEVERITIES)
    if bad:
        problems.append(f"severity overrides must be one of {list(SEVERITIES)}, got {bad}")
    if not problems:
        types = {entry["type"] for entry in data["expectations"]}
        unused = sorted(k for k in overrides if k.split(":", 1)[0] not in types)
        if unused:
            problems.append(
                f"severity override(s) {unused} match no expectation type in the suite; "
                f"the suite uses {sorted(types)}"
            )
    if problems:
        raise SuiteError(f"suite {path} is not usable:\n  " + "\n  ".join(problems))
    checks = []
    for index, entry in enumerate(data["expectations"]):
        kwargs = dict(entry.get("kwargs") or {})
        severity = entry.get("severity", "critical")
        severity = _override_for(overrides, entry["type"], kwargs.get("column")) or severity
        checks.append(Check(index, entry["type"], kwargs, severity, dict(entry.get("meta") or {})))
    return Suite(data["name"], path, tuple(checks), dict(data.get("meta") or {}))


# ================================================================================== pre-checks
def _decode_dictionaries(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns as their plain values (a pandas category is still text)."""
    columns, changed = [], False
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column, changed = column.cast(column.type.value_type), True
        if pa.types.is_large_string(column.type):
            column, changed = column.cast(pa.string()), True
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.schema.names) if changed else table


def _precheck(kind: str, reason: str, **details: Any) -> dict[str, Any]:
    return {
        "type": f"precheck.{kind}",
        "column": details.pop("column", None),
        "severity": "critical",
        "expected": details.pop("expected", None),
        "observed": details.pop("observed", None),
        "unexpected_count": details.pop("unexpected_count", None),
        "unexpected_share": details.pop("unexpected_share", None),
        "sample_values": details.pop("sample_values", []),
        "sample_ids": details.pop("sample_ids", []),
        "why": reason,
        **details,
    }


def _read_part(file: str, options: StorageOptions) -> pa.Table:
    """One part of a batch as a table, in one whole-file read (4x less CPU than streaming record
    batches). Local files' columns decode on Arrow's shared CPU pool: on a fresh worker that costs
    less CPU time as well as less wall time than a single-threaded read (0.6 s against 1.3 s of CPU
    for 1M rows x 30 columns, measured), and concurrent validations share the one pool rather than
    oversubscribing cores. Object-store files are decoded on the calling thread (see
    :func:`tasks.io.open_input`)."""
    with open_input(file, options) as (handle, threads_safe):
        return pq.read_table(handle, use_threads=threads_safe)


def _part_name(batch: BatchRef, file: str) -> str:
    """A part's path inside its batch folder ("part-1.parquet", "day=2/part-0.parquet")."""
    base = str(batch.path).rstrip("/")
    return file[len(base) + 1 :] if file.startswith(base + "/") else posixpath.basename(file)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _raise_if_storage(exc: BaseException, url: str, batch: BatchRef) -> None:
    """Storage that is down or refuses access says nothing about the data: fail, do not judge."""
    problem = as_storage_error(exc, url, f"reading batch {batch.batch_id!r}")
    if problem is not None:
        raise problem from exc


def _read_batch(batch: BatchRef, options: StorageOptions) -> tuple[pa.Table | None, dict | None]:
    """The batch as one table, or the pre-check failure that says why it cannot be read (naming
    the unreadable parts of a folder batch). Storage failures raise
    :class:`models.storage_errors.StorageError` instead: they are not the data's fault."""
    try:
        files = batch_files(batch.path, options)
        fs, _ = filesystem(batch.path, options)
        sizes = {f: fs.size(filesystem(f, options)[1]) for f in files}
    except Exception as exc:  # a vanished or unlistable batch is quarantined, not a crash
        _raise_if_storage(exc, batch.path, batch)
        return None, _precheck(
            "readable",
            "the batch cannot be listed or opened",
            observed=_one_line(exc),
        )
    if not files:
        return None, _precheck(
            "readable",
            "the batch folder holds no Parquet parts",
            expected="one or more *.parquet files",
            observed="no *.parquet file",
        )
    empty_files = [_part_name(batch, f) for f, size in sizes.items() if not size]
    if empty_files:
        return None, _precheck(
            "zero_bytes",
            "a zero-byte file is an export that wrote nothing; re-export the batch",
            expected="a Parquet file",
            observed=f"zero-byte file(s) {empty_files}",
            bad_parts=empty_files,
            footer_rows=_footer_rows(files, options, batch),
        )
    duplicated = _duplicate_columns(files, options)
    if duplicated:
        return None, _precheck(
            "unique_columns",
            f"column name(s) {duplicated} appear more than once in the file; re-export the batch "
            "with one column per name",
            expected="unique column names",
            observed=f"duplicated: {duplicated}",
            footer_rows=_footer_rows(files, options, batch),
        )
    tables, unreadable = [], {}
    for file in files:
        try:
            tables.append(_read_part(file, options))
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for damaged files
            _raise_if_storage(exc, file, batch)
            unreadable[_part_name(batch, file)] = _one_line(exc)
    if unreadable:
        names = sorted(unreadable)
        which = f"part(s) {names} of {len(files)}" if len(files) > 1 else "the file"
        return None, _precheck(
            "readable",
            f"the Parquet data of {which} cannot be read (truncated, corrupt or not Parquet); "
            "re-export the batch",
            expected="readable Parquet files",
            observed="; ".join(f"{name}: {unreadable[name]}" for name in names),
            bad_parts=names,
            footer_rows=_footer_rows(files, options, batch),
        )
    try:
        return (tables[0] if len(tables) == 1 else pa.concat_tables(tables)), None
    except Exception as exc:  # parts whose schemas differ
        first = tables[0].schema
        differing = [
            _part_name(batch, f) for f, t in zip(files, tables, strict=True) if t.schema != first
        ]
        return None, _precheck(
            "readable",
            f"the parts cannot be read as one table: part(s) {differing} have a different "
            f"schema from {_part_name(batch, files[0])}; re-export the batch with one schema",
            expected="parts with one schema",
            observed=_one_line(exc),
            bad_parts=differing,
            footer_rows=sum(t.num_rows for t in tables),
        )


def _duplicate_columns(files: Sequence[str], options: StorageOptions) -> list[str]:
    """Column names that appear more than once in a part's schema (Arrow cannot read those by
    name). A part whose footer cannot be read is left to the read, which reports it."""
    duplicated: set[str] = set()
    for file in files:
        try:
            names = open_parquet(file, options).schema_arrow.names
        except Exception:  # a damaged footer (or storage trouble): the read reports it
            continue
        duplicated.update(name for name in names if names.count(name) > 1)
    return sorted(duplicated)


def _footer_rows(files: Sequence[str], options: StorageOptions, batch: BatchRef) -> int | None:
    """Rows the Parquet footers announce, or None (unknown) when a footer cannot be read: what a
    reader knows of a batch whose data cannot be read as a whole. Never 0 for "unknown", so rows
    in = rows scored + rows quarantined never under-counts silently."""
    total = 0
    for file in files:
        try:
            total += count_rows(file, options)
        except Exception as exc:  # a truncated file has no footer
            _raise_if_storage(exc, file, batch)
            return None
    return total


def _id_sample(table: pa.Table, id_column: str | None, mask: pa.ChunkedArray | np.ndarray) -> list:
    if id_column is None or id_column not in table.schema.names:
        return []
    if isinstance(mask, np.ndarray):
        mask = pa.array(mask)
    picked = table.column(id_column).filter(mask).slice(0, SAMPLE_SIZE)
    return _jsonable(picked.to_pylist())


def _schema_prechecks(
    table: pa.Table,
    required: Sequence[str],
    expected_columns: Sequence[str] | None,
    numeric: Sequence[str],
    id_column: str | None,
) -> list[dict[str, Any]]:
    """Missing required columns, numeric columns that are not numbers or hold infinities."""
    present = table.schema.names
    missing = [c for c in required if c not in present]
    failures = []
    if missing:
        unexpected = [
            c for c in present if expected_columns is not None and c not in expected_columns
        ]
        hint = f"; unexpected column(s) {unexpected}: renamed?" if unexpected else ""
        failures.append(
            _precheck(
                "required_columns",
                f"missing column(s) {missing}{hint}",
                expected=list(required),
                observed=list(present),
                missing=missing,
                unexpected=unexpected,
            )
        )
    for name in numeric:
        if name not in present:
            continue
        column = table.column(name)
        kind = column.type
        if (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_decimal(kind)
            or pa.types.is_null(kind)
        ):
            continue
        detail: dict[str, Any] = {"column": name, "expected": "numbers", "observed": str(kind)}
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            text = column.to_pandas()
            parsed = pd.to_numeric(text, errors="coerce")
            bad = (parsed.isna() & text.notna()).to_numpy()
            if bad.any():
                detail.update(
                    unexpected_count=int(bad.sum()),
                    unexpected_share=float(bad.mean()),
                    sample_values=_jsonable(text[bad].head(SAMPLE_SIZE).tolist()),
                    sample_ids=_id_sample(table, id_column, bad),
                )
                why = f"numeric column {name!r} holds text that is not a number"
            else:
                why = f"numeric column {name!r} is stored as text (the values parse as numbers)"
        else:
            why = f"numeric column {name!r} has type {kind}, not a number type"
        failures.append(_precheck("numeric_type", why + "; fix the export's column type", **detail))
    for name in numeric:
        if name not in present or not pa.types.is_floating(table.schema.field(name).type):
            continue
        infinite = pc.is_inf(table.column(name))
        count = pc.sum(infinite).as_py() or 0
        if count:
            failures.append(
                _precheck(
                    "finite",
                    f"numeric column {name!r} holds infinite values: the model cannot scale them",
                    column=name,
                    expected="finite numbers (or null)",
                    observed=f"{count} infinite value(s)",
                    unexpected_count=count,
                    unexpected_share=count / table.num_rows,
                    sample_values=_jsonable(
                        table.column(name).filter(infinite).slice(0, SAMPLE_SIZE).to_pylist()
                    ),
                    sample_ids=_id_sample(table, id_column, infinite),
                )
            )
    return failures


def _prepare_frame(
    table: pa.Table, numeric: Sequence[str], missing_tokens: Sequence[str]
) -> pd.DataFrame:
    """The frame GX validates: tokens nulled, dictionaries decoded, decimals and all-null numeric
    columns as float64 (both are numbers to the model)."""
    table = null_missing_tokens(_decode_dictionaries(table), missing_tokens)
    for name in numeric:
        kind = table.schema.field(name).type
        if pa.types.is_decimal(kind) or pa.types.is_null(kind):
            position = table.schema.get_field_index(name)
            table = table.set_column(position, name, table.column(name).cast(pa.float64()))
    # self_destruct frees each Arrow column as it is converted: the caller drops the table next,
    # and the batch is never held twice in memory.
    return table.to_pandas(date_as_object=False, split_blocks=True, self_destruct=True)


# ===================================================================================== GX run
# Below this many rows GX's bookkeeping (about 0.45 s for a 150-expectation suite, Python that
# holds the GIL) outweighs the row-level work a second thread could share, and the second context
# costs more than it saves (measured: 10k rows 0.47 s on one thread, 0.49 s on two).
PARALLEL_VALIDATION_ROWS = 100_000


def _gx_threads(rows: int) -> int:
    """Threads (each with its own GX context) that validate the column groups of a batch of
    ``rows`` rows: two where there are two cores and the batch is big enough to share.
    ``AEFLOW_VALIDATION_THREADS`` overrides it (1 = one group at a time)."""
    configured = os.environ.get("AEFLOW_VALIDATION_THREADS", "").strip()
    if not configured:
        return min(2, os.cpu_count() or 1) if rows >= PARALLEL_VALIDATION_ROWS else 1
    if not configured.isdigit() or int(configured) < 1:
        raise ValueError(
            f"AEFLOW_VALIDATION_THREADS must be a whole number >= 1, got {configured!r}; "
            "unset it for the default (2 where there are two cores)"
        )
    return int(configured)


def _gx_context() -> Any:
    """An ephemeral GX context: in-memory stores, no docs site, analytics and progress bars off."""
    _gx_environment()
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.execution_engine import pandas_execution_engine

    # GX hashes every row of a batch under 1 GB just to label it (a third of the validation time
    # at 1M rows); the label is unused here, so the threshold is set below any batch.
    pandas_execution_engine.HASH_THRESHOLD = 0
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


class _GxRunner:
    """One ephemeral context with one in-memory dataframe asset, for one batch's validation.

    Every data source added to a context re-serialises the context's config, so the asset is
    built once and each run passes its own frame as a batch parameter.
    """

    def __init__(self) -> None:
        self.context = _gx_context()
        asset = self.context.data_sources.add_pandas("aeflow").add_dataframe_asset("batch")
        self.definition = asset.add_batch_definition_whole_dataframe("whole")

    def __enter__(self) -> _GxRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # The execution engine caches every frame it validated, and GX keeps the last context it
        # built in a module-level slot; the validators form reference cycles with the engine, so
        # without this the batch's memory would wait for a full garbage collection.
        # (Private GX 1.24 attributes, read defensively: at worst memory waits for the collector.)
        engine = getattr(self.context.data_sources.get("aeflow"), "_execution_engine", None)
        manager = getattr(engine, "batch_manager", None)
        for name in ("_batch_data_cache", "_batch_cache"):
            cache = getattr(manager, name, None)
            if isinstance(cache, dict):
                cache.clear()
        self.context.data_sources.delete("aeflow")

    def run(self, frame: pd.DataFrame, checks: Sequence[Check], result_format: Any) -> Any:
        from great_expectations import ExpectationSuite
        from great_expectations.validator.v1_validator import Validator

        suite = ExpectationSuite(
            name="aeflow", expectations=[c.gx_configuration().to_domain_obj() for c in checks]
        )
        # One Validator reads the batch once; Batch.validate would build it a second time.
        validator = Validator(
            batch_definition=self.definition,
            batch_parameters={"dataframe": frame},
            result_format=result_format,
        )
        return validator.validate_expectation_suite(suite)


def _exception_message(info: Any) -> str | None:
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return " ".join(str(info.get("exception_message") or "").split())
    for value in info.values():
        message = _exception_message(value)
        if message:
            return message
    return None


def _expected_of(check: Check) -> dict[str, Any]:
    return _jsonable({k: v for k, v in check.kwargs.items() if k != "column"})


def _failure(check: Check, result: Any, rows: int) -> dict[str, Any]:
    payload = result.result or {}
    unexpected = payload.get("unexpected_count")
    element_count = payload.get("element_count") or rows
    failure: dict[str, Any] = {
        "type": check.type,
        "column": check.column,
        "severity": check.severity,
        "expected": _expected_of(check),
        "observed": _jsonable(payload.get("observed_value")),
        "unexpected_count": None if unexpected is None else int(unexpected),
        "unexpected_share": (
            None if unexpected is None or not element_count else float(unexpected) / element_count
        ),
        # A null check's unexpected values are all null: only the ids say something.
        "sample_values": []
        if "null" in check.type
        else _jsonable(list(payload.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]),
        "sample_ids": [],
        "why": check.meta.get("why", ""),
    }
    if unexpected is not None and failure["observed"] is None:
        failure["observed"] = (
            f"{unexpected} of {element_count} values unexpected "
            f"({payload.get('unexpected_percent_nonmissing', 0.0):.3g}% of non-null values)"
        )
    details = payload.get("details")
    if details and len(json.dumps(_jsonable(details))) <= 2000:
        failure["details"] = _jsonable(details)
    error = _exception_message(result.exception_info)
    if error:
        failure["error"] = error
        failure["observed"] = failure["observed"] or "the check raised an error"
    return failure


def _by_column(checks: Iterable[Check]) -> dict[str | None, list[Check]]:
    """Checks grouped by the one column they read (None: table-level or several columns)."""
    groups: dict[str | None, list[Check]] = {}
    for check in checks:
        single = check.column if check.columns() == [check.column] else None
        groups.setdefault(single, []).append(check)
    return groups


def _run_checks(
    runners: Sequence[_GxRunner],
    frame: pd.DataFrame,
    checks: Sequence[Check],
    first_pass: str = "BOOLEAN_ONLY",
) -> dict[int, Any]:
    """Every check's GX result, by check index.

    GX filters the whole frame it is given for every row-level metric, so each column's checks
    run on a frame of that column alone (30x less copying on a 30-column batch). A first pass
    asks only for success; the checks that failed run again for their observed values, counts
    and sample values. ``first_pass`` "BASIC" keeps the observed values of passing checks too
    (for Data Docs). The column groups are spread over ``runners``, one thread each.
    """
    results: dict[int, Any] = {}
    detailed = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
    for result_format, todo in ((first_pass, checks), (detailed, None)):
        todo = todo if todo is not None else [c for c in checks if not results[c.index].success]
        jobs = [
            (frame if column is None else frame[[column]], group, result_format)
            for column, group in _by_column(todo).items()
        ]
        for validation in _run_jobs(runners, jobs):
            for item in validation.results:
                results[item.expectation_config.meta[INDEX_META_KEY]] = item
    return results


def _run_jobs(
    runners: Sequence[_GxRunner], jobs: Sequence[tuple[pd.DataFrame, Sequence[Check], Any]]
) -> list[Any]:
    """``runner.run(*job)`` for every job, on one thread per runner; results in job order.

    A GX context is not thread-safe, so each thread borrows a runner of its own. The row-level
    work (comparisons, null masks, quantiles over a million values) runs in numpy and pandas,
    which release the GIL, so the column groups of one batch validate in parallel.
    """
    if len(runners) == 1 or len(jobs) < 2:
        return [runners[0].run(*job) for job in jobs]
    idle: queue.SimpleQueue[_GxRunner] = queue.SimpleQueue()
    for runner in runners:
        idle.put(runner)

    def run(job: tuple[pd.DataFrame, Sequence[Check], Any]) -> Any:
        runner = idle.get()
        try:
            return runner.run(*job)
        finally:
            idle.put(runner)

    # Widest frames and biggest groups first, so no thread is left with a long job at the end.
    order = sorted(range(len(jobs)), key=lambda i: (-jobs[i][0].shape[1], -len(jobs[i][1])))
    with ThreadPoolExecutor(len(runners), thread_name_prefix="aeflow-gx") as pool:
        done = dict(zip(order, pool.map(run, [jobs[i] for i in order]), strict=True))
    return [done[i] for i in range(len(jobs))]


def _sample_ids(
    runner: _GxRunner, frame: pd.DataFrame, check: Check, result: Any, id_column: str | None
) -> list[Any]:
    """Ids of up to SAMPLE_SIZE rows that failed a row-level check.

    For checks whose verdict depends on the value alone, the rows holding GX's sample unexpected
    values are looked up directly; GX's own id lists cost more than the whole validation on a
    million rows with many unexpected values. Other checks ask GX for the ids.
    """
    payload = result.result or {}
    if not payload.get("unexpected_count") or id_column is None or id_column not in frame:
        return []
    column = check.column
    if check.type in VALUE_DETERMINED and column in frame.columns:
        series = frame[column]
        if check.type == "expect_column_values_to_not_be_null":
            mask = series.isna()
        else:
            mask = series.isin(list(payload.get("partial_unexpected_list") or []))
        return _jsonable(frame.loc[mask.to_numpy(), id_column].head(SAMPLE_SIZE).tolist())
    names = list(dict.fromkeys([*check.columns(), id_column]))
    part = frame[names] if check.columns() else frame
    fmt = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": SAMPLE_SIZE,
        "unexpected_index_column_names": [id_column],
    }
    [item] = runner.run(part, [check], fmt).results
    rows = (item.result or {}).get("partial_unexpected_index_list") or []
    return _jsonable([row.get(id_column) for row in rows if isinstance(row, dict)][:SAMPLE_SIZE])


def _render_data_docs(
    suite: Suite, results: dict[int, Any], out_file: str, options: StorageOptions
) -> None:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    ordered = [results[i] for i in sorted(results)]
    passed = sum(1 for r in ordered if r.success)
    combined = ExpectationSuiteValidationResult(
        success=passed == len(ordered),
        results=ordered,
        suite_name=suite.name,
        statistics={
            "evaluated_expectations": len(ordered),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(ordered) - passed,
            "success_percent": 100.0 * passed / max(1, len(ordered)),
        },
    )
    document = ValidationResultsPageRenderer().render(combined)
    write_text_atomic(DefaultJinjaPageView().render(document), out_file, options)


# ================================================================================== validation
def _describe(failure: dict[str, Any]) -> str:
    """One short phrase naming a failed check and what was seen."""
    where = f" on {failure['column']}" if failure.get("column") else ""
    if failure["type"].startswith("precheck."):
        return failure["why"]
    if failure.get("error"):
        return f"{failure['type']}{where} errored: {_brief(failure['error'], 100)}"
    if failure["type"] == "expect_table_columns_to_match_set":
        mismatched = (failure.get("details") or {}).get("mismatched") or {}
        parts = [f"{k} {v}" for k, v in sorted(mismatched.items()) if v]
        return f"column set differs: {'; '.join(parts) or _brief(failure['observed'], 80)}"
    if failure["type"] == "expect_column_quantile_values_to_be_between":
        return _brief(f"quantiles{where} moved: " + _quantile_text(failure), 200)
    if failure.get("unexpected_count") is not None:
        text = f"{failure['type']}{where}: {_unexpected_text(failure)}"
        return _brief(text, 160)
    observed = failure.get("observed")
    shown = _num(observed) if isinstance(observed, float) else _brief(observed, 80)
    return f"{failure['type']}{where}: observed {shown}"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)


def _quantile_text(failure: dict[str, Any]) -> str:
    """'q0.5 = 46.1 not in [20, 40]' for each quantile outside its range."""
    observed = failure.get("observed") or {}
    ranges = (failure.get("expected") or {}).get("quantile_ranges") or {}
    parts = []
    for q, value, bounds in zip(
        observed.get("quantiles") or [],
        observed.get("values") or [],
        ranges.get("value_ranges") or [],
        strict=False,
    ):
        low, high = bounds
        if isinstance(value, int | float) and not (
            (low is None or value >= low) and (high is None or value <= high)
        ):
            parts.append(f"q{q:g} = {_num(value)} not in [{_num(low)}, {_num(high)}]")
    return ", ".join(parts) or _brief(observed, 80)


def _summary(prefix: str, failures: Sequence[dict[str, Any]], limit: int = 3) -> str:
    parts = [_describe(f) for f in failures[:limit]]
    more = f"; and {len(failures) - limit} more" if len(failures) > limit else ""
    return f"{prefix}: " + "; ".join(parts) + more


def _as_batch(batch: BatchRef | dict[str, Any]) -> BatchRef:
    return batch if isinstance(batch, BatchRef) else BatchRef(**batch)


def validate_batch(
    batch: BatchRef | dict[str, Any],
    suite_path: str,
    id_column: str,
    timestamp_column: str | None,
    numeric: list[str],
    categorical: list[str],
    missing_tokens: list[str],
    on_warning: str = "score",
    options: StorageOptions = None,
    severity_overrides: dict[str, str] | None = None,
    data_docs_dir: str | None = None,
    optional_columns: Sequence[str] = (),
) -> ValidationOutcome:
    """Validate one batch against the suite; never raises for bad data.

    A damaged, empty or mis-typed batch comes back quarantined with the cause; a bad suite file
    raises SuiteError (the batch is not at fault). ``data_docs_dir``: also write GX Data Docs HTML
    for the batch there, as ``<batch_id>.html``. ``optional_columns`` (the label) may be present
    or absent: when absent, their checks are skipped (see :meth:`Suite.for_batch`).
    """
    if on_warning not in ON_WARNING:
        raise ValueError(f"on_warning must be one of {list(ON_WARNING)}, got {on_warning!r}")
    batch = _as_batch(batch)
    # The suite is usually a repository file while batches live on the storage root.
    suite = load_suite(suite_path, severity_overrides, None if is_local(suite_path) else options)
    started = _now()

    def outcome(rows: int, critical: list, warnings: list, checks: int) -> ValidationOutcome:
        if critical:
            status, accepted = "quarantined", False
            reason = _summary(f"quarantined, {len(critical)} critical failure(s)", critical)
        elif warnings and on_warning == "quarantine":
            status, accepted = "quarantined", False
            reason = _summary(
                f"quarantined (on_warning = 'quarantine'), {len(warnings)} warning(s)", warnings
            )
        elif warnings:
            status, accepted = "warning", True
            reason = _summary(f"scored with {len(warnings)} warning(s)", warnings)
        else:
            status, accepted, reason = "passed", True, f"passed all {checks} checks"
        return ValidationOutcome(
            batch.batch_id,
            status,
            accepted,
            rows,
            critical,
            warnings,
            reason,
            suite=suite_path,
            checks=checks,
            validated_at=started,
        )

    table, unreadable = _read_batch(batch, options)
    if unreadable is not None:
        return outcome(unreadable.get("footer_rows"), [unreadable], [], 0)
    rows = table.num_rows
    if rows == 0:
        empty = _precheck("non_empty", "the batch has no rows", expected=">= 1 row", observed=0)
        return outcome(0, [empty], [], 0)
    suite = suite.for_batch(table.schema.names, optional_columns)
    roles = [id_column, timestamp_column, *numeric, *categorical]
    required = list(dict.fromkeys([c for c in roles if c] + suite.referenced_columns()))
    schema_failures = _schema_prechecks(table, required, suite.column_set(), numeric, id_column)
    if schema_failures:
        return outcome(rows, schema_failures, [], 0)

    frame = _prepare_frame(table, numeric, missing_tokens)
    del table
    first_pass = "BOOLEAN_ONLY" if data_docs_dir is None else "BASIC"
    with contextlib.ExitStack() as stack:
        # Contexts are built here, one after the other: GX keeps the last one in a global slot.
        runners = [stack.enter_context(_GxRunner()) for _ in range(_gx_threads(rows))]
        runner = runners[0]
        results = _run_checks(runners, frame, suite.checks, first_pass)
        ordered = []
        for check in suite.checks:
            if not results[check.index].success:
                failure = _failure(check, results[check.index], rows)
                if "error" not in failure:
                    failure["sample_ids"] = _sample_ids(
                        runner, frame, check, results[check.index], id_column
                    )
                ordered.append(failure)
    del frame
    # Hand the batch's memory back to the OS now: a long-running worker would otherwise keep the
    # allocators' high-water mark of its biggest batch for good.
    release_native_memory()
    if data_docs_dir is not None:
        out_file = join(data_docs_dir, f"{batch.batch_id}.html")
        _render_data_docs(suite, results, out_file, options)
    critical = [f for f in ordered if f["severity"] == "critical"]
    warnings = [f for f in ordered if f["severity"] == "warning"]
    return outcome(rows, critical, warnings, len(suite.checks))


# ============================================================================== Prefect tasks
def _run_logger() -> logging.Logger | logging.LoggerAdapter:
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def _artifact_key(prefix: str, batch_id: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"{prefix}-" + (re.sub(r"[^a-z0-9-]+", "-", batch_id.lower()).strip("-") or "batch")


def _publish_markdown(key: str, markdown: str, description: str) -> None:
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return  # called outside Prefect (plain function use): the report files are the record
    create_markdown_artifact(markdown=markdown, key=key, description=description)


@task(name="validate-batch", cache_policy=NO_CACHE, **storage_retry_options())
def validate_batch_task(
    batch: BatchRef | dict[str, Any],
    suite_path: str,
    id_column: str,
    timestamp_column: str | None,
    numeric: list[str],
    categorical: list[str],
    missing_tokens: list[str],
    on_warning: str = "score",
    options: StorageOptions = None,
    severity_overrides: dict[str, str] | None = None,
    data_docs_dir: str | None = None,
    optional_columns: list[str] | None = None,
) -> dict[str, Any]:
    """`validate_batch` as a Prefect task: logs each warning, publishes a markdown artifact for a
    batch scored with warnings, and returns the outcome as a dict."""
    outcome = validate_batch(
        batch,
        suite_path,
        id_column,
        timestamp_column,
        numeric,
        categorical,
        missing_tokens,
        on_warning,
        options,
        severity_overrides,
        data_docs_dir,
        optional_columns or (),
    )
    log = _run_logger()
    for failure in outcome.warnings:
        log.warning("batch %s: warning: %s", outcome.batch_id, _describe(failure))
    if outcome.status == "quarantined":
        log.warning("batch %s: %s", outcome.batch_id, outcome.reason)
    elif outcome.status == "warning":
        _publish_markdown(
            _artifact_key("validation", outcome.batch_id),
            outcome.report_markdown(),
            f"batch {outcome.batch_id} scored with {len(outcome.warnings)} warning(s)",
        )
    else:
        log.info("batch %s: %s", outcome.batch_id, outcome.reason)
    return outcome.to_dict()


def describe_failures(failures: Iterable[dict[str, Any]]) -> list[str]:
    """One line per failed check (for logs and the CLI)."""
    return [f"[{f['severity']}] {_describe(f)}" for f in failures]


# Moved out of this module; these names still import from here: the quarantine lifecycle to
# tasks.quarantine, drafting suites to tasks.suite_draft.
_MOVED_TO_QUARANTINE = frozenset(
    {
        "archive_folder",
        "list_quarantined",
        "quarantine",
        "quarantine_task",
        "quarantined_input",
        "release_quarantined",
    }
)
_MOVED_TO_SUITE_DRAFT = frozenset({"DraftSettings", "draft_suite", "suite_json", "_round_outward"})


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_QUARANTINE:
        import tasks.quarantine

        return getattr(tasks.quarantine, name)
    if name in _MOVED_TO_SUITE_DRAFT:
        from tasks import suite_draft

        return getattr(suite_draft, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
