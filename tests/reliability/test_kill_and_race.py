"""Concurrent `aeflow score` runs on one local root, killed with SIGKILL at seeded random moments,
then run to the end: every input ends scored once, quarantined once or listed as ignored; rows add
up; nothing outside the root changes; no temporary is left."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from model_support import register_tiny_champion
from reliability_support import (
    DATASET,
    LocalStore,
    check_invariants,
    deliver,
    ignored_in_output,
    staged_uploads,
    start_score,
    tree_state,
    write_config,
)
from subprocess_support import stop_process_group

from tasks.io import StorageLayout, list_batches

pytestmark = pytest.mark.slow

SEED = 20261130
KILL_ROUNDS = 4
VALID_DAYS = 12


def wait_for_activity(root: Path, processes, timeout_s: float = 180) -> None:
    """Until some run has started on the batches (a lock file exists) or every run ended."""
    locks = root / "scored" / DATASET / "_locks"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if locks.exists() and any(locks.iterdir()):
            return
        if all(p.poll() is not None for p in processes):
            return
        time.sleep(0.05)
    raise AssertionError("no run started scoring within the timeout")


def kill(process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def test_killed_and_concurrent_runs_leave_every_batch_scored_or_quarantined_once(
    prefect_api_url, tmp_path
):
    rng = random.Random(SEED)
    root, outside, runs_tmp = tmp_path / "root", tmp_path / "outside", tmp_path / "runs-tmp"
    runs_tmp.mkdir()
    layout = StorageLayout(str(root), DATASET)
    deliveries = deliver(Path(layout.incoming), outside, SEED, VALID_DAYS)
    register_tiny_champion(layout, list_batches(layout.incoming)[0].path, tmp_path, epochs=1)
    config = write_config(tmp_path, str(root))
    before_outside = tree_state(outside)
    log = []

    for round_index in range(KILL_ROUNDS):
        concurrent = rng.choice([2, 3])
        runs = [
            start_score(config, prefect_api_url, runs_tmp, slow_s=0.3) for _ in range(concurrent)
        ]
        try:
            wait_for_activity(root, runs)
            delay = rng.uniform(0.2, 4.0)
            time.sleep(delay)
            victims = [r for r in runs if rng.random() < 0.8] or runs[:1]
            for victim in victims:
                kill(victim)
            log.append(
                f"round {round_index}: {concurrent} runs, killed {len(victims)} at +{delay:.1f}s"
            )
            for survivor in runs:
                if survivor not in victims:
                    survivor.communicate(timeout=600)
        finally:
            for run in runs:
                if run.poll() is None:
                    stop_process_group(run)
        if round_index == 1:
            # a staging copy of the root beside it, made mid-way: runs must never touch it
            shutil.copytree(root, outside / "staging-copy", symlinks=True)
            before_outside = tree_state(outside)

    finals = [start_score(config, prefect_api_url, runs_tmp) for _ in range(2)]
    outputs = []
    for run in finals:
        output, _ = run.communicate(timeout=900)
        assert run.returncode == 0, output
        outputs.append(output)
    printed = set().union(*(ignored_in_output(o) for o in outputs))
    counts = check_invariants(LocalStore(root), deliveries, printed)
    assert counts["scored"] == VALID_DAYS + 1 and counts["quarantined"] == 3, counts
    assert tree_state(outside) == before_outside, "a file outside the root was touched"
    assert not staged_uploads(runs_tmp)
    print("\n".join([*log, f"invariants hold: {counts}"]))
