"""The outcome of validating one batch, and the words that describe its failed checks.

A failed check is one plain dict (``type``, ``column``, ``severity``, ``expected``, ``observed``,
``unexpected_count``, ``unexpected_share``, ``sample_values``, ``sample_ids``, ``why`` and, when
the check itself errored, ``error``); the pre-checks build theirs with :func:`precheck_failure`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tasks.markdown import md_code, md_text

SAMPLE_SIZE = 5  # sample bad ids and values kept per failed check


@dataclass(frozen=True)
class ValidationOutcome:
    """What validation decided for one batch: a frozen record, JSON at the storage boundary
    (``to_dict`` / ``from_dict``).

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
        return jsonable(asdict(self))

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
    text = value if isinstance(value, str) else json.dumps(jsonable(value), sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, non-finite floats as 'inf'/'-inf'/'nan'."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
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


def utc_now() -> str:
    """Now, in UTC, as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precheck_failure(kind: str, reason: str, **details: Any) -> dict[str, Any]:
    """A critical failure of the pre-check ``precheck.<kind>``; ``reason`` is its ``why``, and
    ``details`` fill the other fields (any extra key is kept, e.g. ``bad_parts``)."""
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


def describe_failure(failure: dict[str, Any]) -> str:
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
    if failure["type"] in TYPE_CHECKS:
        return f"{failure['type']}{where}: observed {shown}, expected {_expected_type(failure)}"
    return f"{failure['type']}{where}: observed {shown}"


TYPE_CHECKS = ("expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list")


def _expected_type(failure: dict[str, Any]) -> str:
    """What a type check wants, in words: its drafted ``why`` ('type: timestamps with a time
    zone'), else its kwargs."""
    why = failure.get("why") or ""
    if why.startswith("type: "):
        return why.removeprefix("type: ")
    expected = failure.get("expected") or {}
    return _brief(expected.get("type_") or expected.get("type_list"), 80)


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


def summarize_failures(prefix: str, failures: Sequence[dict[str, Any]], limit: int = 3) -> str:
    parts = [describe_failure(f) for f in failures[:limit]]
    more = f"; and {len(failures) - limit} more" if len(failures) > limit else ""
    return f"{prefix}: " + "; ".join(parts) + more


def describe_failures(failures: Iterable[dict[str, Any]]) -> list[str]:
    """One line per failed check (for logs and the CLI)."""
    return [f"[{f['severity']}] {describe_failure(f)}" for f in failures]
