"""Which error ends a run with failed batches, and so its exit code: exit 2 says "no batch
touched", so a self-explaining error (a ValueError) met by one batch after others were committed
is exit 1 listing every failure (it was exit 2 whatever the run had committed)."""

from __future__ import annotations

from flows.errors import BatchesFailed, run_failure
from models.storage_errors import StorageUnavailable


def test_a_self_explaining_error_is_exit_2_only_when_nothing_was_committed():
    failures = ["2026-01-02: ValueError: column 'amount' cannot be read as numbers"]
    error = ValueError("column 'amount' cannot be read as numbers")
    assert run_failure(failures, [error], committed=0) is error
    after_commits = run_failure(failures, [error], committed=3)
    assert isinstance(after_commits, BatchesFailed)
    assert "1 batch(es) failed to score" in str(after_commits)
    assert "cannot be read as numbers" in str(after_commits)  # the reason is still named


def test_storage_failures_win_and_no_failure_is_no_error():
    failures = ["a: ValueError: bad", "b: StorageUnavailable: down"]
    errors = [ValueError("bad"), StorageUnavailable("storage s3://x is down", "s3://x")]
    error = run_failure(failures, errors, committed=5)
    assert isinstance(error, StorageUnavailable) and error.url == "s3://x"
    assert "1 more batch(es) failed too" in str(error)
    assert run_failure([], [], committed=2) is None
    mixed = run_failure(
        failures[:1] + ["c: RuntimeError: bug"], [ValueError("bad"), RuntimeError("bug")], 0
    )
    assert isinstance(mixed, BatchesFailed)
