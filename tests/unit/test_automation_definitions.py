"""infra/automations.yaml filled in for a dataset (flows/automations.py), and the command line's
checks before it asks the Prefect API anything."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from flows.automations import (
    AutomationTargets,
    default_automations_file,
    load_definitions,
    render_automations,
)
from flows.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
RETRAIN = uuid.UUID("11111111-1111-4111-8111-111111111111")
SLACK = uuid.UUID("22222222-2222-4222-8222-222222222222")
HOOK = uuid.UUID("33333333-3333-4333-8333-333333333333")


def rendered(**targets):
    definitions = load_definitions(REPO_ROOT / "infra" / "automations.yaml")
    return render_automations(definitions, AutomationTargets("demo", "/etc/demo.toml", **targets))


def test_the_shipped_file_is_the_default_and_fills_in_for_a_dataset():
    assert default_automations_file() == REPO_ROOT / "infra" / "automations.yaml"
    result = rendered(retrain_deployment_id=RETRAIN, notification_block_ids=(SLACK,))
    by_name = {a.name: a for a in result.automations}
    assert sorted(by_name) == [
        "aeflow demo: notify on a refused challenger",
        "aeflow demo: notify on quarantine",
        "aeflow demo: retrain on drift",
    ]
    assert result.left_out == []
    for automation in result.automations:
        assert automation.trigger.match.root["prefect.resource.id"] == "aeflow.dataset.demo"
        assert {"aeflow", "aeflow.dataset.demo"} <= set(automation.tags)
        assert "${" not in automation.model_dump_json()

    drift = by_name["aeflow demo: retrain on drift"]
    assert drift.trigger.expect == {"aeflow.drift.detected"}
    assert drift.trigger.match.root["aeflow.retrain"] == "wanted"  # never twice, never when off
    [run] = drift.actions
    assert (run.type, run.deployment_id) == ("run-deployment", RETRAIN)
    assert run.parameters["trigger"] == "drift"

    quarantine = by_name["aeflow demo: notify on quarantine"]
    [notify] = quarantine.actions
    assert (notify.type, notify.block_document_id) == ("send-notification", SLACK)
    assert "aeflow quarantine show --config /etc/demo.toml" in notify.body


def test_each_notification_block_gets_its_own_action():
    result = rendered(retrain_deployment_id=RETRAIN, notification_block_ids=(SLACK, HOOK))
    refused = next(a for a in result.automations if a.name.endswith("refused challenger"))
    assert [a.block_document_id for a in refused.actions] == [SLACK, HOOK]


def test_automations_whose_targets_are_missing_are_left_out_with_the_reason():
    result = rendered()
    assert result.automations == []
    reasons = dict(result.left_out)
    assert reasons["aeflow demo: retrain on drift"] == "no retrain deployment to run"
    assert "--notify" in reasons["aeflow demo: notify on quarantine"]


def test_an_unknown_placeholder_or_an_invalid_automation_is_named(tmp_path):
    bad = [{"name": "x ${datset}", "trigger": {"type": "event"}, "actions": []}]
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \$\{datset\}"):
        render_automations(bad, AutomationTargets("demo", "/c"), "my.yaml")
    invalid = [{"name": "y", "trigger": {"type": "event", "posture": "Sideways"}, "actions": []}]
    with pytest.raises(ValueError, match="my.yaml: automation 'y' is not valid"):
        render_automations(invalid, AutomationTargets("demo", "/c"), "my.yaml")
    not_a_list = tmp_path / "a.yaml"
    not_a_list.write_text("name: x\n")
    with pytest.raises(ValueError, match="must hold a list of automations"):
        load_definitions(not_a_list)
    with pytest.raises(FileNotFoundError, match="AEFLOW_HOME"):
        load_definitions(tmp_path / "missing.yaml")


def test_notify_without_automations_is_a_usage_error(capsys):
    config = REPO_ROOT / "configs" / "demo.toml"
    assert main(["serve", "--config", str(config), "--notify", "slack-webhook/ops"]) == 2
    assert "--notify names the block the automations notify" in capsys.readouterr().err
