"""When the Prefect API goes away: `aeflow serve` stops promptly on SIGTERM and a flow run fails
fast, each with a message naming the API's URL (issue 12, defect 10).

A real `prefect server start` on loopback is killed (SIGKILL, its whole process group) while
`aeflow serve` or `aeflow score` use it; the bounds are far below what Prefect's own retries take
(a minute per API call, and seconds per queued event at exit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from model_support import register_tiny_champion
from subprocess_support import AEFLOW, prefect_server_process, started, wait_until

from flows.errors import EXIT_PREFECT_API_LOST
from flows.prefect_api import GRACE_ENV
from tasks.demo_data import generate_demo_data
from tasks.io import Storage, list_batches
from tasks.scoring import SLOW_WRITE_ENV

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CHUNK_ROWS = 1024


def demo_config(folder: Path, champion: bool = False) -> Path:
    """The demo config on a storage root under ``folder``; with ``champion``, two small demo
    batches and a registered tiny champion."""
    layout = Storage(str(folder / "data"), "demo")
    if champion:
        generate_demo_data(
            layout.incoming, days=2, rows_per_day=8 * CHUNK_ROWS, seed=4, drift_day=None,
            malformed_day=None,
        )  # fmt: skip
        register_tiny_champion(layout, list_batches(layout.incoming)[0].path, folder, epochs=1)
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('root = "../data"', 'root = "data"')
    text = text.replace("../expectations/demo.json", str(REPO_ROOT / "expectations" / "demo.json"))
    text = text.replace("chunk_rows = 65536", f"chunk_rows = {CHUNK_ROWS}")
    config = folder / "demo.toml"
    config.write_text(text)
    return config


def client_env(folder: Path, api: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_HOME": str(folder / "client-home"), "PREFECT_API_URL": api,
            **extra}  # fmt: skip


def kill_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


def deployment_count(api: str) -> int:
    try:
        return len(httpx.post(f"{api}/deployments/filter", json={}, timeout=5).json())
    except (httpx.HTTPError, ValueError):
        return 0


def output_once_exited(process: subprocess.Popen, seconds: float, log: Path, what: str) -> str:
    """``log`` once ``process`` has exited; fails when it still runs after ``seconds``."""
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} still runs {seconds:.0f} s later:\n{log.read_text()[-3000:]}")
    return log.read_text()


def test_serve_stops_within_seconds_on_sigterm_while_the_prefect_api_is_down(tmp_path):
    config = demo_config(tmp_path)
    log = tmp_path / "serve.log"
    with prefect_server_process(tmp_path / "server") as (api, server):
        command = [AEFLOW, "serve", "--config", str(config)]
        with started(command, client_env(tmp_path, api), log) as serving:
            wait_until(lambda: deployment_count(api) == 5, 90, "the 5 deployments", log)
            time.sleep(2)  # the runner is polling for runs
            kill_server(server)
            serving.send_signal(signal.SIGTERM)
            # Well within its 30 s stop timeout: it sees the API is down and does not wait for it.
            output = output_once_exited(serving, 20, log, "aeflow serve after SIGTERM")
    assert serving.returncode == EXIT_PREFECT_API_LOST, output[-3000:]
    assert f"the Prefect API at {api} does not answer" in output
    assert "without pausing the deployments' schedules" in output


def test_a_flow_run_fails_within_seconds_when_the_prefect_api_goes_away(tmp_path):
    config = demo_config(tmp_path, champion=True)
    scored = tmp_path / "data" / "scored" / "demo"
    log = tmp_path / "score.log"
    with prefect_server_process(tmp_path / "server") as (api, server):
        # About 2 s per chunk: the run lasts well beyond the kill.
        env = client_env(tmp_path, api, **{GRACE_ENV: "3", SLOW_WRITE_ENV: "2"})
        with started([AEFLOW, "score", "--config", str(config)], env, log) as run:
            wait_until(
                lambda: run.poll() is not None or list(scored.glob("date=*/.*.tmp-*")),
                120,
                "a batch being written",
                log,
            )
            assert run.poll() is None, "the run ended before the API went away:\n" + log.read_text()
            kill_server(server)
            output = output_once_exited(run, 40, log, "the run whose API went away")
    assert run.returncode == EXIT_PREFECT_API_LOST, output[-3000:]
    assert f"aeflow: error: the Prefect API at {api} has not answered" in output
    assert "flow run" in output and "(aeflow-score)" in output
