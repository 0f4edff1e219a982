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
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import artifact_key, in_prefect_run, publish_markdown, run_logger
from tasks.frames import release_native_memory
from tasks.io import BatchRef, Storage, StorageOptions, is_local, storage_retry_options
from tasks.settings import ColumnsSettings, ValidationSettings
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


def as_batch(batch: BatchRef | dict[str, Any]) -> BatchRef:
    """A batch passed as a BatchRef or as its dict."""
    return batch if isinstance(batch, BatchRef) else BatchRef(**batch)


def _decide(
    batch_id: str,
    rows: int | None,
    critical: list[dict[str, Any]],
    warnings: list[dict[str, Any]],
    *,
    checks: int,
    validation: ValidationSettings,
    started: str,
) -> ValidationOutcome:
    """The outcome: quarantined on a critical failure (or on a warning when ``on_warning`` says
    quarantine), scored with warnings, or passed."""
    if critical:
        status, accepted = "quarantined", False
        reason = summarize_failures(f"quarantined, {len(critical)} critical failure(s)", critical)
    elif warnings and validation.on_warning == "quarantine":
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
        batch_id,
        status,
        accepted,
        rows,
        critical,
        warnings,
        reason,
        suite=validation.suite,
        checks=checks,
        validated_at=started,
    )


# Checks of a column's distribution: with no value in the column there is none to compare (GX
# fails them with no observed value); how empty the column is, its null-share check judges.
DISTRIBUTION_CHECKS = frozenset(
    {
        "expect_column_kl_divergence_to_be_less_than",
        "expect_column_quantile_values_to_be_between",
        "expect_column_mean_to_be_between",
        "expect_column_median_to_be_between",
        "expect_column_stdev_to_be_between",
    }
)


def _about_no_values(frame: Any, check: Any) -> bool:
    """Whether ``check`` is a distribution check on a column of ``frame`` without any value."""
    return (
        check.type in DISTRIBUTION_CHECKS
        and check.column in frame.columns
        and not frame[check.column].notna().any()
    )


def _judge(
    batch: BatchRef,
    *,
    columns: ColumnsSettings,
    validation: ValidationSettings,
    options: StorageOptions,
    data_docs: Storage | None,
) -> ValidationOutcome:
    # The suite is usually a repository file while batches live on the storage root.
    suite_options = None if is_local(validation.suite) else options
    suite = load_suite(validation.suite, validation.severity, suite_options)
    started = utc_now()

    def outcome(rows: int | None, critical: list, warnings: list, checks: int) -> ValidationOutcome:
        return _decide(
            batch.batch_id,
            rows,
            critical,
            warnings,
            checks=checks,
            validation=validation,
            started=started,
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
    # The label may be present or absent: its checks run only when the batch has it.
    suite = suite.for_batch(table.schema.names, [columns.label] if columns.label else [])
    numeric = columns.numeric
    roles = [columns.id, columns.timestamp, *numeric, *columns.categorical]
    required = list(dict.fromkeys([c for c in roles if c] + suite.referenced_columns()))
    schema_failures = schema_prechecks(table, required, suite.column_set(), numeric, columns.id)
    if schema_failures:
        return outcome(rows, schema_failures, [], 0)

    frame = prepare_frame(table, numeric, columns.missing_values)
    del table
    first_pass = "BOOLEAN_ONLY" if data_docs is None else "BASIC"
    with contextlib.ExitStack() as stack:
        # Contexts are built here, one after the other: GX keeps the last one in a global slot.
        runners = [stack.enter_context(GxRunner()) for _ in range(gx_threads(rows))]
        runner = runners[0]
        results = run_checks(runners, frame, suite.checks, first_pass)
        ordered = []
        for check in suite.checks:
            if not results[check.index].success and not _about_no_values(frame, check):
                failure = failure_of(check, results[check.index], rows)
                if "error" not in failure:
                    failure["sample_ids"] = sample_ids(
                        runner, frame, check, results[check.index], columns.id
                    )
                ordered.append(failure)
    del frame
    # Hand the batch's memory back to the OS now: a long-running worker would otherwise keep the
    # allocators' high-water mark of its biggest batch for good.
    release_native_memory()
    if data_docs is not None:
        page = data_docs.data_docs_page(batch.batch_id)
        render_data_docs(suite, results, page, data_docs.options)
    critical = [f for f in ordered if f["severity"] == "critical"]
    warnings = [f for f in ordered if f["severity"] == "warning"]
    return outcome(rows, critical, warnings, len(suite.checks))


def _announce(outcome: ValidationOutcome) -> None:
    """Inside a Prefect run: log each warning, and publish a Markdown artifact for a batch scored
    with warnings. Outside one (the CLI, a notebook) the outcome is the record: nothing is said."""
    if not in_prefect_run():
        return
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


def validate_batch(
    batch: BatchRef | dict[str, Any],
    *,
    columns: ColumnsSettings,
    validation: ValidationSettings,
    options: StorageOptions = None,
    data_docs: Storage | None = None,
) -> ValidationOutcome:
    """Validate one batch against the suite ``validation.suite``; never raises for bad data.

    ``columns`` gives the roles the pre-checks require (id, timestamp, features) and the
    missing-value tokens; the label (``columns.label``) may be present or absent, its checks run
    only when present (see :meth:`Suite.for_batch`). ``validation`` gives the severity overrides
    and what a warning means (``on_warning``). A damaged, empty or mis-typed batch comes back
    quarantined with the cause; a bad suite file raises SuiteError (the batch is not at fault).
    ``data_docs``: also write the batch's GX Data Docs page (HTML) where that storage keeps them
    (:meth:`tasks.io.Storage.data_docs_page`).
    Inside a Prefect run, warnings are logged and a batch scored with warnings gets a Markdown
    artifact.
    """
    outcome = _judge(
        as_batch(batch),
        columns=columns,
        validation=validation,
        options=options,
        data_docs=data_docs,
    )
    _announce(outcome)
    return outcome


validate_batch_task = task(
    validate_batch, name="validate-batch", cache_policy=NO_CACHE, **storage_retry_options()
)
