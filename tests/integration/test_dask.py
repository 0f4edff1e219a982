"""The score flow on a Dask cluster (prefect-dask), as `aeflow score --dask ADDRESS` runs it.

The test starts its own LocalCluster: one worker process (so tasks really travel to another
process, pickled by reference) with two threads, and tiny data.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from model_support import register_tiny_champion, score_demo_batch

from flows.score import run_score
from tasks.demo_data import (
    generate_demo_data,
)
from tasks.io import Storage, list_batches

REPO_ROOT = Path(__file__).resolve().parents[2]
DAYS, ROWS_PER_DAY = 3, 600


@pytest.fixture(scope="module")
def dask_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dask")
    layout = Storage(str(workdir / "data"), "demo")
    generate_demo_data(
        layout.incoming,
        days=DAYS,
        rows_per_day=ROWS_PER_DAY,
        seed=5,
        drift_day=None,
        malformed_day=None,
    )
    batches = list_batches(layout.incoming)
    register_tiny_champion(layout, batches[0].path, workdir, reason="dask test")

    # The same storage scored by the plain functions in this process, to compare with.
    reference = Storage(str(workdir / "reference"), "demo")
    shutil.copytree(layout.root, reference.root)
    for batch in list_batches(reference.incoming):
        score_demo_batch(reference, batch)

    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('root = "../data"', 'root = "data"')
    text = text.replace("../expectations/demo.json", str(REPO_ROOT / "expectations" / "demo.json"))
    config = workdir / "demo.toml"
    config.write_text(text)

    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
    ) as cluster:
        summary = run_score(str(config), dask=cluster.scheduler_address)
        task_prefixes = set(cluster.scheduler.task_prefixes)
    return {
        "summary": summary,
        "layout": layout,
        "reference": reference,
        "task_prefixes": task_prefixes,
    }


def test_the_score_flow_runs_its_tasks_on_the_dask_cluster(dask_run):
    summary = dask_run["summary"]
    assert summary["batches_scored"] == DAYS and summary["batches_quarantined"] == 0
    assert summary["rows_scored"] == DAYS * ROWS_PER_DAY
    prefixes = " ".join(sorted(dask_run["task_prefixes"]))
    assert "score_batch" in prefixes and "validate_batch" in prefixes, prefixes


def test_dask_outputs_equal_the_plain_functions_outputs(dask_run):
    layout, reference = dask_run["layout"], dask_run["reference"]
    outputs = sorted(p.relative_to(layout.scored) for p in Path(layout.scored).glob("*/*.parquet"))
    expected = sorted(
        p.relative_to(reference.scored) for p in Path(reference.scored).glob("*/*.parquet")
    )
    assert outputs == expected and len(outputs) == DAYS
    for relative in outputs:
        got = pq.read_table(Path(layout.scored, relative)).drop_columns(["scored_at"])
        want = pq.read_table(Path(reference.scored, relative)).drop_columns(["scored_at"])
        assert got.equals(want), relative
