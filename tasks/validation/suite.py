"""The suite: a GX 1.x JSON file of expectations, each with a severity, parsed and checked.

The suite file is plain GX 1.x JSON (``name``, ``expectations`` with ``type``/``kwargs``/``severity``/
``meta``), drafted by :func:`tasks.validation.draft.draft_suite` from reference batches and then
reviewed like code. GX drops an expectation it cannot build with only a log line, so
:func:`suite_problems` builds each one itself and reports unknown types and bad arguments as errors.
Optional columns (the label) may be present or absent in a batch (:meth:`Suite.for_batch`).
"""

from __future__ import annotations

import difflib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tasks.io import StorageOptions, filesystem

SEVERITIES = ("critical", "warning")

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
INDEX_META_KEY = "aeflow_index"  # added in memory only: maps GX results back to suite entries


class SuiteError(ValueError):
    """A suite file that cannot be used; the message lists every problem and how to fix it."""


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


def gx_environment() -> None:
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
    gx_environment()
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
    return problems + columns_outside_the_set(data)


def columns_outside_the_set(data: dict[str, Any]) -> list[str]:
    """Expectations on a column the suite's exact column set lacks (optional columns aside):
    every batch would be quarantined for "missing" it, a mistake of the suite, not of the data.
    Reads the parsed document only (no GX import): the runs' preflight checks it too."""
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        return []
    entries = [e for e in data["expectations"] if isinstance(e, dict)]
    column_set = next(
        (
            (e.get("kwargs") or {}).get("column_set")
            for e in entries
            if e.get("type") == "expect_table_columns_to_match_set"
        ),
        None,
    )
    if not isinstance(column_set, list):
        return []
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    optional = (meta.get("aeflow") or {}).get("optional_columns") or []
    known = [*column_set, *optional]
    problems = []
    for position, entry in enumerate(data["expectations"]):
        kwargs = entry.get("kwargs") if isinstance(entry, dict) else None
        if not isinstance(kwargs, dict):
            continue
        for key in COLUMN_KWARGS:
            name = kwargs.get(key)
            if isinstance(name, str) and name not in known:
                close = difflib.get_close_matches(name, [str(c) for c in known], n=1, cutoff=0.6)
                near = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"expectations[{position}] ({entry.get('type')}): column {name!r} is not in "
                    f"the suite's column set{near}: every batch would be quarantined for lacking "
                    "it; fix the name, or add the column to expect_table_columns_to_match_set"
                )
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
