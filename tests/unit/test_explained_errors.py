"""The errors the command line reports in one line (exit 1, 2 or 4) reach the terminal without
the stack of frames Prefect's run logger would print before that line; a bug keeps its traceback.
(`aeflow train --until 2030-01-01` printed a traceback, then "aeflow: error: no batches to train
on ...".)"""

from __future__ import annotations

import logging
import sys

import pytest

from flows.cli import ExplainedErrorsWithoutTracebacks
from flows.errors import BatchesFailed


def _record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "prefect.flow_runs", logging.ERROR, __file__, 1, "failed", (), exc_info
    )


@pytest.mark.parametrize(
    "error",
    [
        ValueError("no batches to train on in incoming/x dated in the 30 days up to 2030-01-01"),
        BatchesFailed("2 batch(es) failed to score: ..."),
        FileNotFoundError("CSV file x.csv does not exist"),
    ],
)
def test_an_error_the_cli_explains_in_one_line_loses_its_traceback(error):
    record = _record(error)
    assert ExplainedErrorsWithoutTracebacks().filter(record)
    assert record.exc_info is None and record.getMessage() == "failed"


def test_a_bug_keeps_its_traceback():
    record = _record(KeyError("columns"))
    assert ExplainedErrorsWithoutTracebacks().filter(record)
    assert record.exc_info is not None
