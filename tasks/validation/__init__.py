"""Validation: the data contract every batch meets before it is scored, and quarantine.

- :mod:`~tasks.validation.suite`: the suite file (GX 1.x JSON with severities), parsed and checked;
- :mod:`~tasks.validation.draft`: drafting a suite from reference batches, to be reviewed;
- :mod:`~tasks.validation.prechecks`: what Great Expectations cannot see or would crash on (an
  unreadable or empty file, missing columns, numbers stored as text, infinities);
- :mod:`~tasks.validation.gx_runner`: the suite's checks in ephemeral Great Expectations contexts;
- :mod:`~tasks.validation.outcome`: what validation decided for a batch, and the words for it;
- :mod:`~tasks.validation.validator`: one batch through pre-checks and suite, and its Prefect task;
- :mod:`~tasks.validation.quarantine`: a rejected batch moved out of incoming/ exactly once with
  its report; listing and releasing quarantined batches.

A batch is never dropped silently: a critical failure quarantines it (the untouched input next to
report.json and report.md), warnings are logged and shown as Prefect artifacts, and a quarantined
batch goes back to incoming/ with ``release_quarantined`` once the data or the suite is fixed.
Great Expectations is imported lazily (2-4 s), so importing this package is cheap.
"""

from tasks.validation.draft import DraftSettings, cannot_fail, draft_suite, suite_json
from tasks.validation.outcome import ValidationOutcome, describe_failures
from tasks.validation.quarantine import (
    QUARANTINED,
    ReleaseError,
    list_quarantined,
    quarantine,
    quarantine_rejected_task,
    quarantine_task,
    release_quarantined,
)
from tasks.validation.suite import (
    SEVERITIES,
    Suite,
    SuiteError,
    load_suite,
    read_suite_document,
    suite_problems,
)
from tasks.validation.validator import validate_batch, validate_batch_task

__all__ = [
    "QUARANTINED",
    "SEVERITIES",
    "DraftSettings",
    "ReleaseError",
    "Suite",
    "SuiteError",
    "ValidationOutcome",
    "cannot_fail",
    "describe_failures",
    "draft_suite",
    "list_quarantined",
    "load_suite",
    "quarantine",
    "quarantine_rejected_task",
    "quarantine_task",
    "release_quarantined",
    "read_suite_document",
    "suite_json",
    "suite_problems",
    "validate_batch",
    "validate_batch_task",
]
