"""Deployments on a real Prefect server: `prefect server start` on loopback with its own SQLite
database, `aeflow serve` in another process, cron-scheduled runs created by the server's
scheduler, and an ad-hoc `prefect deployment run` that the served process completes.

Separate from the session's test harness: the server, the serving process and the CLI calls are
subprocesses that only share the server's URL, as on a real machine. Every process is stopped at
the end, whatever happens.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from subprocess_support import AEFLOW, PREFECT, prefect_server, started, wait_until

from flows.config import load_config
from flows.train import train_flow
from tasks.demo_data import generate_demo_data
from tasks.io import StorageLayout
from tasks.validation import draft_suite, suite_json

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = {"model": {"epochs": 3}, "evaluation": {"baselines": False, "report": False}}


async def flow_runs(api: str, deployment: str) -> list:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    async with PrefectClient(api) as client:
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment]))
        )


async def deployments(api: str) -> list:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api) as client:
        return await client.read_deployments()


@pytest.fixture
def trained_demo(tmp_path: Path) -> dict:
    """A demo config with three small days and a champion trained on the first two."""
    data = tomllib.loads((REPO_ROOT / "configs" / "demo.toml").read_text())
    data["storage"]["root"] = "data"
    data["validation"]["suite"] = "demo.json"
    for section, values in TINY.items():
        data[section] = {**data.get(section, {}), **values}
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(data))
    cfg = load_config(config)
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    manifest = generate_demo_data(
        layout.incoming, days=3, rows_per_day=400, seed=3, drift_day=None, malformed_day=None
    )
    cols = cfg.columns
    suite = draft_suite(
        pa.concat_tables([pq.read_table(p) for p in manifest.paths[:2]]),
        name=cfg.dataset,
        columns=cols.model_copy(update={"missing_values": []}),
    )
    Path(cfg.suite_path).write_text(suite_json(suite))
    train_flow(config=str(config), until=manifest.batch_ids[1])
    return {"config": config, "layout": layout, "manifest": manifest}


def test_served_deployments_get_cron_runs_and_complete_an_ad_hoc_run(trained_demo, tmp_path):
    serve_log = tmp_path / "serve.log"
    # schedule new deployments within seconds instead of the default minute
    with prefect_server(
        tmp_path / "server-home", PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2"
    ) as api:
        client_env = {
            **os.environ,
            "PREFECT_HOME": str(tmp_path / "client-home"),
            "PREFECT_API_URL": api,
            "GX_ANALYTICS_ENABLED": "false",
            "COLUMNS": "250",  # the watch output wraps at the terminal's width
        }
        with started(
            [AEFLOW, "serve", "--config", str(trained_demo["config"])], client_env, serve_log
        ) as serving:
            nightly = wait_until(
                lambda: asyncio.run(flow_runs(api, "demo-nightly")),
                60,
                "scheduled runs of demo-nightly",
                serve_log,
            )
            # cron '0 2 * * *' in UTC: every scheduled run starts at 02:00, one day apart
            starts = sorted(run.expected_start_time.astimezone(dt.UTC) for run in nightly)
            assert all(run.state.is_scheduled() for run in nightly)
            assert all((t.hour, t.minute) == (2, 0) for t in starts)
            assert len(starts) >= 2 and starts[1] - starts[0] == dt.timedelta(days=1)
            weekly = wait_until(
                lambda: asyncio.run(flow_runs(api, "demo-retrain")), 30, "retrain runs"
            )
            for run in weekly:
                start = run.expected_start_time.astimezone(dt.UTC)
                assert (start.weekday(), start.hour) == (6, 3)  # Sunday 03:00
                assert run.parameters["trigger"] == "schedule"

            day = trained_demo["manifest"].batch_ids[2]
            adhoc = subprocess.run(
                [PREFECT, "deployment", "run", "aeflow-nightly/demo-nightly",
                 "-p", f"date={day}", "--watch", "--watch-timeout", "120"],
                env=client_env, capture_output=True, text=True, timeout=150,
            )  # fmt: skip
            assert adhoc.returncode == 0, adhoc.stdout + adhoc.stderr + serve_log.read_text()
            assert "finished successfully" in adhoc.stdout
            # the watch ends with the night's result, in one line, before the run's final state
            lines = adhoc.stdout.splitlines()
            [result] = [line for line in lines if "aeflow.nightly.finished" in line]
            assert f"demo night {day}: 1 scored, 0 already scored, 0 quarantined" in result
            assert "rows flagged" in result and "; retraining " in result
            task_events = [i for i, line in enumerate(lines) if "prefect.task-run." in line]
            assert lines.index(result) > max(task_events)  # after every step of the run

            runs = asyncio.run(flow_runs(api, "demo-nightly"))
            done = [r for r in runs if r.state.is_completed()]
            assert len(done) == 1 and done[0].parameters["date"] == day

            # SIGTERM with the API up: a clean stop, the schedules paused, exit code 0.
            serving.send_signal(signal.SIGTERM)
            assert serving.wait(timeout=40) == 0, serve_log.read_text()[-3000:]
            assert all(d.paused for d in asyncio.run(deployments(api)))
    layout = trained_demo["layout"]
    assert [p.stem for p in Path(layout.scored).glob("date=*/*.parquet")] == [day]
    assert Path(layout.reports("drift"), f"{day}.json").is_file()
    assert Path(layout.reports("nightly"), f"{day}.json").is_file()
