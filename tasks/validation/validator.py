"""Validating one batch: pre-checks, then the suite in Great Expectations, then the outcome.

A batch goes through two stages. Pre-checks (:mod:`tasks.validation.prechecks`) catch what Great
Expectations cannot see or would crash on. Then the suite in ``expectations/<dataset>.json`` runs
on the batch (after the dataset's missing-value tokens are turned into nulls), one column at a time
(:mod:`tasks.validation.gx_runner`).

Every expectation has a severity. A critical failure quarantines the batch with its report; warnings
let the batch be scored (or quarantine it when the config says ``on_warning = "quarantine"``) and are
logged, kept in the run summary and shown as Prefect artifacts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import artifact_key, publish_markdown, run_logger
from tasks.frames import release_native_memory
from tasks.io import BatchRef, StorageOptions, is_local, join, storage_retry_options
from tasks.validation.gx_runner import (
    GxRunner,
    failure_of,
    gx_threads,
    render_data_docs,
    run_checks,
    sample_ids,
)
from tasks.validation.outcome import (
    ValidationOutcome,
    describe_failure,
    precheck_failure,
    summarize_failures,
    utc_now,
)
from tasks.validation.prechecks import prepare_frame, read_batch, schema_prechecks
from tasks.validation.suite import load_suite

ON_WARNING = ("score", "quarantine")


def as_batch(batch: BatchRef | dict[str, Any]) -> BatchRef:
    """A batch passed as a BatchRef or as its dict."""
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
    batch = as_batch(batch)
    # The suite is usually a repository file while batches live on the storage root.
    suite = load_suite(suite_path, severity_overrides, None if is_local(suite_path) else options)
    started = utc_now()

    def outcome(rows: int, critical: list, warnings: list, checks: int) -> ValidationOutcome:
        if critical:
            status, accepted = "quarantined", False
            reason = summarize_failures(
                f"quarantined, {len(critical)} critical failure(s)", critical
            )
        elif warnings and on_warning == "quarantine":
            status, accepted = "quarantined", False
            reason = summarize_failures(
                f"quarantined (on_warning = 'quarantine'), {len(warnings)} warning(s)", warnings
            )
        elif warnings:
            status, accepted = "warning", True
            reason = summarize_failures(f"scored with {len(warnings)} warning(s)", warnings)
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

    table, unreadable = read_batch(batch, options)
    if unreadable is not None:
        return outcome(unreadable.get("footer_rows"), [unreadable], [], 0)
    rows = table.num_rows
    if rows == 0:
        empty = precheck_failure(
            "non_empty", "the batch has no rows", expected=">= 1 row", observed=0
        )
        return outcome(0, [empty], [], 0)
    suite = suite.for_batch(table.schema.names, optional_columns)
    roles = [id_column, timestamp_column, *numeric, *categorical]
    required = list(dict.fromkeys([c for c in roles if c] + suite.referenced_columns()))
    schema_failures = schema_prechecks(table, required, suite.column_set(), numeric, id_column)
    if schema_failures:
        return outcome(rows, schema_failures, [], 0)

    frame = prepare_frame(table, numeric, missing_tokens)
    del table
    first_pass = "BOOLEAN_ONLY" if data_docs_dir is None else "BASIC"
    with contextlib.ExitStack() as stack:
        # Contexts are built here, one after the other: GX keeps the last one in a global slot.
        runners = [stack.enter_context(GxRunner()) for _ in range(gx_threads(rows))]
        runner = runners[0]
        results = run_checks(runners, frame, suite.checks, first_pass)
        ordered = []
        for check in suite.checks:
            if not results[check.index].success:
                failure = failure_of(check, results[check.index], rows)
                if "error" not in failure:
                    failure["sample_ids"] = sample_ids(
                        runner, frame, check, results[check.index], id_column
                    )
                ordered.append(failure)
    del frame
    # Hand the batch's memory back to the OS now: a long-running worker would otherwise keep the
    # allocators' high-water mark of its biggest batch for good.
    release_native_memory()
    if data_docs_dir is not None:
        out_file = join(data_docs_dir, f"{batch.batch_id}.html")
        render_data_docs(suite, results, out_file, options)
    critical = [f for f in ordered if f["severity"] == "critical"]
    warnings = [f for f in ordered if f["severity"] == "warning"]
    return outcome(rows, critical, warnings, len(suite.checks))


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
    log = run_logger()
    for failure in outcome.warnings:
        log.warning("batch %s: warning: %s", outcome.batch_id, describe_failure(failure))
    if outcome.status == "quarantined":
        log.warning("batch %s: %s", outcome.batch_id, outcome.reason)
    elif outcome.status == "warning":
        publish_markdown(
            artifact_key("validation", outcome.batch_id),
            outcome.report_markdown(),
            f"batch {outcome.batch_id} scored with {len(outcome.warnings)} warning(s)",
        )
    else:
        log.info("batch %s: %s", outcome.batch_id, outcome.reason)
    return outcome.to_dict()
