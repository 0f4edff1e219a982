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

from tasks.io import Storage, list_batches

pytestmark = pytest.mark.slow

SEED = 20261130
KILL_ROUNDS = 3
VALID_DAYS = 12


def progress(root: Path) -> tuple[int, int, frozenset[str]]:
    """(batches marked, batches quarantined, temporaries of writes in flight) under ``root``."""
    scored, quarantine = root / "scored" / DATASET, root / "quarantine" / DATASET
    marked = len(list(scored.glob("_success/*.json")))
    quarantined = len(list(quarantine.glob("*/report.json")))
    writing = frozenset(p.name for p in scored.glob("date=*/.*.tmp-*"))
    return marked, quarantined, writing


def wait_for_activity(root: Path, processes, timeout_s: float = 300) -> None:
    """Until this round's runs are at work on the batches (a new write in flight, or a batch marked
    or quarantined since the round began), or every run ended."""
    marked, quarantined, writing = progress(root)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = progress(root)
        if now[2] - writing or now[0] > marked or now[1] > quarantined:
            return
        if all(p.poll() is not None for p in processes):
            return
        time.sleep(0.05)
    raise AssertionError("no run started scoring within the timeout")


def kill(process) -> bool:
    """SIGKILL ``process`` and its group; whether it was still running (the kill cut it short)."""
    alive = process.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    return alive


def test_killed_and_concurrent_runs_leave_every_batch_scored_or_quarantined_once(
    prefect_api_url, tmp_path
):
    rng = random.Random(SEED)
    root, outside, runs_tmp = tmp_path / "root", tmp_path / "outside", tmp_path / "runs-tmp"
    runs_tmp.mkdir()
    layout = Storage(str(root), DATASET)
    deliveries = deliver(Path(layout.incoming), outside, SEED, VALID_DAYS)
    register_tiny_champion(layout, list_batches(layout.incoming)[0].path, tmp_path, epochs=1)
    config = write_config(tmp_path, str(root))
    before_outside = tree_state(outside)
    log = []
    cut_short = 0  # runs that were still at work when killed

    started = time.monotonic()
    for round_index in range(KILL_ROUNDS):
        concurrent = rng.choice([1, 2])
        runs = [
            start_score(config, prefect_api_url, runs_tmp, slow_s=0.5) for _ in range(concurrent)
        ]
        try:
            wait_for_activity(root, runs)
            began = time.monotonic()
            # each run dies at its own seeded moment in the first seconds of scoring
            moments = sorted(rng.uniform(0.1, 3.0) for _ in runs)
            for run, moment in zip(runs, moments, strict=True):
                time.sleep(max(0.0, began + moment - time.monotonic()))
                cut_short += kill(run)
            marked, quarantined, writing = progress(root)
            log.append(
                f"round {round_index} at {began - started:.0f}s: {concurrent} runs killed at "
                f"+{', +'.join(f'{m:.1f}' for m in moments)}s; so far {marked} marked, "
                f"{quarantined} quarantined, {len(writing)} writes cut short"
            )
        finally:
            for run in runs:
                if run.poll() is None:
                    stop_process_group(run)
        if round_index == 1:
            # a staging copy of the root beside it, made mid-way: runs must never touch it
            shutil.copytree(root, outside / "staging-copy", symlinks=True)
            before_outside = tree_state(outside)

    assert cut_short >= 1, "no kill hit a run at work: the rounds tested nothing\n" + "\n".join(log)
    log.append(f"{cut_short} runs killed at work; final runs at {time.monotonic() - started:.0f}s")
    finals = [start_score(config, prefect_api_url, runs_tmp) for _ in range(2)]
    outputs = []
    for run in finals:
        output, _ = run.communicate(timeout=900)
        assert run.returncode == 0, output
        outputs.append(output)
    printed = set().union(*(ignored_in_output(o) for o in outputs))
    counts = check_invariants(LocalStore(root), deliveries, printed)
    assert counts["scored"] == VALID_DAYS and counts["quarantined"] == 3, counts
    assert tree_state(outside) == before_outside, "a file outside the root was touched"
    assert not staged_uploads(runs_tmp)
    log.append(f"done at {time.monotonic() - started:.0f}s; invariants hold: {counts}")
    print("\n" + "\n".join(log))
