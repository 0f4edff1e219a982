"""`--workers 0` is refused as -3 is, not read as "the config's default" (it was: `workers or
default` took 0 for no value)."""

from __future__ import annotations

import pytest

from flows.commands.orchestrate import _task_runner
from flows.score import run_score


def test_zero_workers_is_refused_for_score_nightly_and_backfill():
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        _task_runner(None, 0, 2)
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        run_score("no-such-config.toml", workers=0)
    assert _task_runner(None, None, 2) is not None  # no value: the config's
