"""Storage errors injected between reading a batch and committing it, through a real fsspec file
system that fails (tests/faulty_storage.py: object-store semantics over a local folder), under two
concurrent `aeflow score` runs; then an outage longer than the retries, and the recovery."""

from __future__ import annotations

import random
import shutil
import time

import pytest
from faulty_storage import injected, storage_options, write_plan
from model_support import register_tiny_champion
from reliability_support import (
    DATASET,
    ROWS,
    Delivery,
    LocalStore,
    check_invariants,
    deliver,
    ignored_in_output,
    sha256_bytes,
    staged_uploads,
    start_score,
    tree_state,
    write_config,
)

from flows.errors import EXIT_STORAGE
from tasks.io import Storage

pytestmark = pytest.mark.slow

SEED = 7
VALID_DAYS = 8


def fault_plan(rng: random.Random) -> list[dict]:
    """Seeded faults at every step from listing to commit: each rule fails a few of the calls it
    matches (``times``), and the runs must get past all of them."""
    incoming, scored = f"incoming/{DATASET}/", f"scored/{DATASET}/"
    return [
        {"ops": ["ls"], "match": incoming, "skip": rng.randint(0, 3), "times": 1, "error": "connection"},
        {"ops": ["open_read"], "match": incoming, "skip": rng.randint(0, 10), "times": 2, "error": "connection"},
        {"ops": ["open_read"], "match": incoming, "skip": rng.randint(15, 30), "times": 1, "error": "timeout"},
        # between read and commit: the scored file's or the marker's upload fails
        {"ops": ["put_file"], "match": scored, "skip": rng.randint(0, 4), "times": 2, "error": "503"},
        {"ops": ["put_file"], "match": "_success/", "skip": rng.randint(2, 6), "times": 1, "error": "connection"},
        # the batch lease, the quarantine's copy and its last step (removing the input)
        {"ops": ["pipe_file"], "match": "_locks/", "skip": rng.randint(0, 6), "times": 1, "error": "503"},
        {"ops": ["put_file"], "match": f"quarantine/{DATASET}/", "skip": rng.randint(0, 2), "times": 1, "error": "timeout"},
        {"ops": ["rm"], "match": incoming, "skip": 0, "times": 1, "error": "connection"},
    ]  # fmt: skip


def finish_all(runs) -> list[str]:
    outputs = []
    for run in runs:
        output, _ = run.communicate(timeout=900)
        outputs.append(output)
    return outputs


def test_storage_errors_between_read_and_commit_lose_nothing_and_quarantine_nothing_good(
    prefect_api_url, tmp_path
):
    rng = random.Random(SEED)
    base, runs_tmp = tmp_path / "store", tmp_path / "runs-tmp"
    base.mkdir()
    runs_tmp.mkdir()
    root = base / "root"
    deliveries = deliver(root / "incoming" / DATASET, tmp_path / "outside", SEED, VALID_DAYS)
    plan = write_plan(tmp_path / "plan.json", [])
    options = storage_options(base, plan)
    layout = Storage("faulty://root", DATASET)
    register_tiny_champion(
        layout, str(root / "incoming" / DATASET / "2026-01-01.parquet"), tmp_path,
        epochs=1, options=options,
    )  # fmt: skip
    config = write_config(tmp_path, "faulty://root", options, retries=4, retry_delay_s=0.3)
    before_outside = tree_state(tmp_path / "outside")

    # 1. two concurrent runs through seeded faults at every step. The faults of several rules can
    # land on one task (the rejected batch's quarantine reads, locks, copies and removes), so the
    # runs retry as often as the plan injects faults in all: whichever task meets them, every
    # transient fault is ridden out (an outage longer than the retries is step 2).
    rules = fault_plan(rng)
    write_plan(plan, rules)
    budget = sum(rule["times"] for rule in rules)
    riding_out = write_config(tmp_path, "faulty://root", options, budget, retry_delay_s=0.1)
    runs = [start_score(riding_out, prefect_api_url, runs_tmp, faulty=True) for _ in range(2)]
    outputs = finish_all(runs)
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
    faults = injected(plan)
    assert len(faults) >= 6, faults  # the faults really happened
    printed = set().union(*(ignored_in_output(o) for o in outputs))
    counts = check_invariants(LocalStore(root), deliveries, printed)
    assert counts["scored"] == VALID_DAYS and counts["quarantined"] == 3, counts

    # 2. the store goes away for longer than the retries: the run fails naming it, and judges
    # nothing (the new batches are neither quarantined nor marked)
    incoming = root / "incoming" / DATASET
    for day in ("2026-01-01", "2026-01-02"):
        shutil.copy(incoming / f"{day}.parquet", incoming / f"late-{day}.parquet")
        deliveries.append(Delivery(f"late-{day}.parquet", "scored", f"late-{day}", ROWS))
        deliveries[-1].digests = {"": sha256_bytes((incoming / f"late-{day}.parquet").read_bytes())}
    write_plan(
        plan,
        [
            {
                "ops": ["open_read"],
                "match": f"incoming/{DATASET}/late-",
                "times": 10_000,
                "error": "connection",
            }
        ],
    )
    down = start_score(config, prefect_api_url, runs_tmp, faulty=True)
    [output] = finish_all([down])
    assert down.returncode == EXIT_STORAGE, output
    [error] = [line for line in output.splitlines() if line.startswith("aeflow: error:")]
    assert "storage faulty://root/incoming/rel/late-2026-01-0" in error and "unreachable" in error
    assert "Traceback" not in output
    assert not list((root / "quarantine" / DATASET).glob("late-*"))
    assert not list((root / "scored" / DATASET / "_success").glob("late-*"))

    # 3. it comes back: the next run scores what was left, and every invariant holds
    write_plan(plan, [])
    time.sleep(0.1)
    [output] = finish_all([back := start_score(config, prefect_api_url, runs_tmp, faulty=True)])
    assert back.returncode == 0, output
    counts = check_invariants(LocalStore(root), deliveries, ignored_in_output(output))
    assert counts["scored"] == VALID_DAYS + 2, counts
    assert tree_state(tmp_path / "outside") == before_outside
    assert not staged_uploads(runs_tmp)
    print(f"\n{len(faults)} faults injected; invariants hold: {counts}")
