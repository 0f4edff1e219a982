"""The config's columns against the suite and the model, before any batch is touched.

A misspelled column in the config is a config error, not bad data: checked at the start of a run
(score, nightly, backfill against the suite and the model that scores; train against the suite),
it stops the run with the names and the fix while every batch stays in incoming/. Without it the
first batch would be quarantined for "missing" a column it never had.

Plain functions returning the problems found, one readable line each (empty: they agree).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.io import Storage, read_json

MODEL_SCHEMA_FILE = "schema.json"  # written by models.persistence.save_detector


def _near(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def suite_column_problems(
    roles: Mapping[str, Sequence[str]],
    column_set: Sequence[str] | None,
    suite_path: str,
    optional: Sequence[str] = (),
) -> list[str]:
    """Config columns the suite's exact column set does not have.

    Args:
        roles: config key -> the columns it names, e.g. ``{"columns.numeric": [...],
            "columns.id": ["row_id"]}``.
        column_set: the suite's ``expect_table_columns_to_match_set`` columns (None: the suite
            has no column-set check, nothing to compare).
        suite_path: named in the messages.
        optional: columns a batch may lack (the label); they need not be in the column set.
    """
    if column_set is None:
        return []
    problems = []
    for key, names in roles.items():
        absent = [n for n in names if n not in column_set and n not in optional]
        if absent:
            hints = "".join(_near(n, column_set) for n in absent)
            problems.append(
                f"{key} names {absent}, not in the suite's column set ({suite_path}){hints}"
            )
    return problems


def suite_columns(document: Any) -> tuple[list[str] | None, list[str]]:
    """(the exact column set, the optional columns) of a parsed suite document, read without
    Great Expectations (importing it costs seconds); a malformed document gives (None, []): the
    validation that follows names its problems."""
    if not isinstance(document, dict) or not isinstance(document.get("expectations"), list):
        return None, []
    column_set = next(
        (
            list(entry.get("kwargs", {}).get("column_set") or [])
            for entry in document["expectations"]
            if isinstance(entry, dict) and entry.get("type") == "expect_table_columns_to_match_set"
        ),
        None,
    )
    meta = document.get("meta") if isinstance(document.get("meta"), dict) else {}
    optional = list((meta.get("aeflow") or {}).get("optional_columns") or [])
    return column_set, optional


def model_schema(storage: Storage, version: str) -> dict[str, Any] | None:
    """The feature schema a registered version was trained on (its bundle's schema.json), or None
    when the bundle has none."""
    storage.registry().entry(version)  # raises when the version is unknown
    return read_json(storage.model_file(version, MODEL_SCHEMA_FILE), storage.options)


def scoring_model_schema(
    storage: Storage, model_version: str | None = None
) -> tuple[str | None, dict[str, Any] | None]:
    """``(version, feature schema)`` of the model a run would score with: ``model_version``, or
    the champion when None; ``(None, None)`` before the first model is trained."""
    version = model_version or storage.registry().champion()
    return version, (model_schema(storage, version) if version else None)


def model_column_problems(
    numeric: Sequence[str],
    categorical: Sequence[str],
    schema: Mapping[str, Any],
    version: str,
) -> list[str]:
    """Differences between the config's feature columns and those the model was trained on."""
    problems = []
    for role in ("numeric", "categorical"):
        configured = list(numeric if role == "numeric" else categorical)
        trained = list(schema.get(f"{role}_columns") or [])
        unknown = [c for c in configured if c not in trained]
        lacking = [c for c in trained if c not in configured]
        if unknown:
            hints = "".join(_near(n, trained) for n in unknown)
            problems.append(
                f"columns.{role} names {unknown}, which model {version} was not trained on "
                f"(it has {trained}){hints}"
            )
        if lacking:
            problems.append(
                f"model {version} was trained on {role} column(s) {lacking}, missing from "
                f"columns.{role}"
            )
    return problems


def label_rule_problems(
    document: Any, label: str | None, positive: Sequence[str], negative: Sequence[str]
) -> list[str]:
    """The label column is text in the suite (a type check of ``str``) but the config does not say
    which of its values mean anomaly: training would stop at the first labelled batch."""
    if label is None or positive or negative or not isinstance(document, dict):
        return []
    entries = [e for e in document.get("expectations") or [] if isinstance(e, dict)]
    on_label = [e for e in entries if (e.get("kwargs") or {}).get("column") == label]
    if not any(
        e.get("type") == "expect_column_values_to_be_of_type"
        and (e.get("kwargs") or {}).get("type_") in ("str", "string", "object")
        for e in on_label
    ):
        return []
    levels = next(
        (
            (e.get("kwargs") or {}).get("value_set")
            for e in on_label
            if e.get("type") == "expect_column_values_to_be_in_set"
        ),
        None,
    )
    seen = f" (values {', '.join(repr(v) for v in levels[:10])})" if levels else ""
    return [
        f"columns.label {label!r} is text in the suite{seen}, and the config does not say which "
        "values mean anomaly: set columns.label_positive (those that do) or "
        "columns.label_negative (those that do not)"
    ]
