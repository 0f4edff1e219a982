"""`aeflow score` killed with SIGKILL part-way, then run again, ends exactly where an uninterrupted
run ends: the same files, the same rows (all but `scored_at`), no temporaries, no duplicates."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from model_support import register_tiny_champion

from tasks.demo_data import generate_demo_data
from tasks.io import Storage, list_batches
from tasks.scoring import SLOW_WRITE_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
AEFLOW = shutil.which("aeflow", path=os.path.dirname(sys.executable)) or shutil.which("aeflow")
DAYS, ROWS_PER_DAY, CHUNK_ROWS = 3, 8192, 1024
# Marker fields that differ between two runs by nature (time, duration, file identity and paths).
RUN_SPECIFIC = {"scored_at", "seconds", "input_fingerprint", "input_path", "output"}


def make_project(folder: Path) -> Path:
    """Demo batches, a registered champion and a config under ``folder``; returns the config."""
    layout = Storage(str(folder / "data"), "demo")
    generate_demo_data(
        layout.incoming,
        days=DAYS,
        rows_per_day=ROWS_PER_DAY,
        seed=2,
        drift_day=None,
        malformed_day=None,
    )
    register_tiny_champion(
        layout, list_batches(layout.incoming)[0].path, folder, epochs=1, reason="kill test"
    )
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('root = "../data"', 'root = "data"')
    text = text.replace("../expectations/demo.json", str(REPO_ROOT / "expectations" / "demo.json"))
    text = text.replace("chunk_rows = 65536", f"chunk_rows = {CHUNK_ROWS}")
    assert f"chunk_rows = {CHUNK_ROWS}" in text
    config = folder / "demo.toml"
    config.write_text(text)
    return config


def aeflow_score(config: Path, api: str, **env: str) -> subprocess.Popen[str]:
    """Start `aeflow score` against the Prefect server at ``api``, with its own Prefect home."""
    assert AEFLOW, "the aeflow console script is not installed in this environment"
    prefect_home = tempfile.mkdtemp(prefix="prefect-", dir=config.parent.parent)
    return subprocess.Popen(
        [AEFLOW, "score", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PREFECT_HOME": prefect_home, "PREFECT_API_URL": api, **env},
        start_new_session=True,  # its own process group: the kill takes every child it started
    )


def finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_killed_score_run_resumes_to_the_same_outputs(tmp_path, prefect_api):
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    killed_dir.mkdir()
    config = make_project(killed_dir)
    shutil.copytree(killed_dir, reference_dir)
    scored = killed_dir / "data" / "scored" / "demo"

    # Kill once one batch is committed and another is half-written (a temporary exists).
    run = aeflow_score(config, prefect_api, **{SLOW_WRITE_ENV: "0.25"})
    partial: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        committed = list(scored.glob("_success/*.json"))
        partial = [p.name for p in scored.glob("date=*/.*.tmp-*")]
        if committed and partial:
            break
        time.sleep(0.05)
    assert run.poll() is None, "the run finished before it could be killed:\n" + run.stdout.read()
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert run.returncode == -signal.SIGKILL
    assert partial, "no batch was part-way through its write when the run was killed"
    assert 1 <= len(list(scored.glob("_success/*.json"))) < DAYS

    # The re-run and the uninterrupted run on the untouched copy, side by side.
    rerun = aeflow_score(config, prefect_api)
    uninterrupted = aeflow_score(reference_dir / "demo.toml", prefect_api)
    finish(rerun)
    finish(uninterrupted)

    expected_scored = reference_dir / "data" / "scored" / "demo"
    assert files_under(scored) == files_under(expected_scored)
    assert not [f for f in files_under(killed_dir / "data") if Path(f).name.startswith(".")]
    outputs = sorted(scored.glob("date=*/*.parquet"))
    assert len(outputs) == DAYS
    for output in outputs:
        got = pq.read_table(output)
        want = pq.read_table(expected_scored / output.relative_to(scored))
        assert got.num_rows == ROWS_PER_DAY
        assert pc.count_distinct(got.column("transaction_id")).as_py() == ROWS_PER_DAY
        assert got.drop_columns(["scored_at"]).equals(want.drop_columns(["scored_at"]))
    for marker in sorted(scored.glob("_success/*.json")):
        got = json.loads(marker.read_text())
        want = json.loads((expected_scored / marker.relative_to(scored)).read_text())
        assert {k: v for k, v in got.items() if k not in RUN_SPECIFIC} == {
            k: v for k, v in want.items() if k not in RUN_SPECIFIC
        }
