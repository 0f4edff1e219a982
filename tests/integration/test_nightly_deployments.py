"""The deployments `aeflow serve` creates for a config: names, cron schedules, parameters."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from flows.deployments import build_deployments, deployment_specs, trigger_help

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    data = tomllib.loads((REPO_ROOT / "configs" / "demo.toml").read_text())
    data["schedule"] = {"nightly": "30 1 * * *", "timezone": "Europe/Berlin"}
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_specs_follow_the_config_schedule_and_name_the_deployments(config):
    specs = {s.flow_name: s for s in deployment_specs(str(config))}
    assert [s.full_name for s in specs.values()] == [
        "aeflow-nightly/demo-nightly",
        "aeflow-retrain/demo-retrain",
        "aeflow-backfill/demo-backfill",
        "aeflow-score/demo-score",
        "aeflow-tune/demo-tune",
    ]
    assert (specs["aeflow-nightly"].cron, specs["aeflow-nightly"].timezone) == (
        "30 1 * * *",
        "Europe/Berlin",
    )
    assert specs["aeflow-retrain"].cron == "0 3 * * 0"  # the weekly default
    assert specs["aeflow-retrain"].parameters["trigger"] == "schedule"
    assert specs["aeflow-backfill"].cron is None and specs["aeflow-score"].cron is None
    assert all(s.parameters["config"] == str(config.resolve()) for s in specs.values())


def test_command_line_overrides_are_validated_like_the_config(config):
    specs = deployment_specs(str(config), nightly_cron="0 4 * * *", timezone="UTC")
    assert (specs[0].cron, specs[0].timezone) == ("0 4 * * *", "UTC")
    with pytest.raises(ValueError, match="5-field cron expression"):
        deployment_specs(str(config), retrain_cron="every sunday")


def test_runner_deployments_carry_the_cron_schedules_and_parameters(config):
    from prefect.task_runners import ThreadPoolTaskRunner

    specs = deployment_specs(str(config))
    runner = ThreadPoolTaskRunner(max_workers=3)
    deployments = {d.name: d for d in build_deployments(specs, task_runner=runner)}
    nightly = deployments["demo-nightly"]
    [schedule] = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 1 * * *", "Europe/Berlin")
    assert nightly.parameters == {"config": str(config.resolve())}
    assert "aeflow" in nightly.tags and "demo" in nightly.tags
    assert deployments["demo-backfill"].schedules == []
    assert deployments["demo-retrain"].parameters["trigger"] == "schedule"
    assert deployments["demo-tune"].schedules == []  # a search runs when someone asks for it


def test_trigger_help_shows_how_to_run_each_deployment_by_hand(config):
    text = trigger_help(deployment_specs(str(config)), str(config))
    assert "aeflow-nightly/demo-nightly" in text and "cron '30 1 * * *' (Europe/Berlin)" in text
    assert "prefect deployment run aeflow-backfill/demo-backfill -p start=" in text
    assert f"aeflow nightly --config {config} --date" in text
