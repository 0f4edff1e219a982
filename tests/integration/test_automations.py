"""The automations of infra/automations.yaml on a real Prefect server: the session's test server,
whose ephemeral mode runs the services automations need (ReactiveTriggers, Actions,
EventPersister; Prefect 3.8.8 starts every RunInEphemeralServers service).

`aeflow serve --automations` installs them next to its deployments (again: updated, never
duplicated); `aeflow.drift.detected` from a night that did not retrain creates a run of the
retrain deployment, which then runs; a quarantine and a refused challenger reach a webhook listener
on loopback through a Prefect notification block.

The serving loop itself is not started here (tests/integration/test_prefect_server.py serves for
real): `Runner.start` returns at once, so the command creates the deployments and the automations
and exits, and the test runs the automation's flow run in-process as a served runner would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from events_support import read_events, related
from subprocess_support import wait_until

from flows.cli import main
from tasks.events import batch_quarantined, drift_detected, emit, model_gated
from tasks.records import DriftReport, GateDecision, QuarantineRecord

pytestmark = pytest.mark.slow  # about 20 s on 2 busy cores, more when it imports the flows first

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASET = "events-demo"
BLOCK = "aeflow-events-test"


class Hook:
    """An HTTP listener on loopback that keeps the JSON body of every POST."""

    def __init__(self) -> None:
        received: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/aeflow"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def heard(self, text: str) -> list[dict]:
        return [body for body in self.received if text in body.get("subject", "")]


def drift(batch_id: str, reason: str) -> DriftReport:
    return DriftReport(
        batch_id=batch_id, dataset=DATASET, reference_version="v1", status="drift", drifted=True,
        reasons=[reason], rows=100, rows_scored=100, drifted_columns=["amount"], warned_columns=[],
        columns=[], score={"psi": 0.4}, flag_rate={"batch": 0.1, "reference": 0.01},
        thresholds={}, report="/r.json",
    )  # fmt: skip


def flow_runs(deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """The demo config for dataset events-demo on a storage root with no batches."""
    workdir = tmp_path_factory.mktemp("automations")
    data = tomllib.loads((REPO_ROOT / "configs" / "demo.toml").read_text())
    data.update(dataset=DATASET)
    data["storage"]["root"] = "data"
    data["validation"]["suite"] = "demo.json"
    config = workdir / "events.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


@pytest.fixture(scope="module")
def served(config):
    """`aeflow serve --automations --notify` (twice) for a dataset with no batches, and the first
    notification heard: the server acts on the automations from then on."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    from flows.automations import installed_automations, remove_automations

    hook = Hook()
    CustomWebhookNotificationBlock(
        name="aeflow test", url=hook.url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    ).save(BLOCK, overwrite=True)

    async def no_serving_loop(self, *args, **kwargs) -> None:
        return None

    command = ["serve", "--config", str(config), "--automations"]
    command += ["--notify", f"custom-webhook/{BLOCK}"]
    outputs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Runner, "start", no_serving_loop)
        for _ in range(2):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                assert main(command) == 0
            outputs.append(printed.getvalue())
    with get_client(sync_client=True) as client:
        retrain = client.read_deployment_by_name(f"aeflow-retrain/{DATASET}-retrain")
        installed = installed_automations(client, DATASET)

    # New automations are loaded by the server's periodic reconciliation (every 5 s on SQLite):
    # announce quarantined batches until one is heard.
    deadline, probe = time.monotonic() + 60, 0
    while not hook.heard("quarantined") and time.monotonic() < deadline:
        probe += 1
        record = QuarantineRecord(
            f"late-{probe}", "quarantined", 12, f"/data/quarantine/{DATASET}/late-{probe}",
            "column amount is missing",
        )  # fmt: skip
        assert emit(batch_quarantined(DATASET, record))
        for _ in range(30):
            if hook.heard("quarantined"):
                break
            time.sleep(0.1)
    yield {
        "config": config,
        "hook": hook,
        "retrain": retrain,
        "installed": installed,
        "outputs": outputs,
    }
    with get_client(sync_client=True) as client:
        remove_automations(client, DATASET)
        for deployment in client.read_deployments():
            if deployment.name.startswith(f"{DATASET}-"):
                client.delete_deployment(deployment.id)
    hook.server.shutdown()


def test_serve_installs_each_automation_once_and_updates_it_on_a_second_start(served):
    first, second = served["outputs"]
    assert first.count("': created") == 3 and "updated" not in first
    assert second.count("': updated") == 3 and "created" not in second
    names = sorted(a.name for a in served["installed"])
    assert names == [
        f"aeflow {DATASET}: notify on a refused challenger",
        f"aeflow {DATASET}: notify on quarantine",
        f"aeflow {DATASET}: retrain on drift",
    ]  # installed twice, held once each
    drift_automation = next(a for a in served["installed"] if a.name.endswith("retrain on drift"))
    [action] = drift_automation.actions
    assert action.deployment_id == served["retrain"].id


def test_a_quarantine_notification_reaches_a_webhook_listener_on_loopback(served):
    [first, *_] = served["hook"].heard("quarantined")
    assert first["subject"].startswith(f"aeflow {DATASET}: batch late-")
    assert "quarantined (12 rows)" in first["body"]
    assert "Reason: column amount is missing" in first["body"]
    assert f"aeflow quarantine show --config {served['config'].resolve()} late-" in first["body"]


def test_drift_a_night_did_not_retrain_on_runs_the_retrain_deployment(served):
    from prefect.flow_engine import run_flow

    from flows.retrain import retrain_flow

    since = dt.datetime.now(dt.UTC)
    deployment = served["retrain"]
    # A night that retrains itself is not retrained on again; one with retrain=false is.
    emit(drift_detected(DATASET, [drift("n1", "retrained in the night")], retraining="started"))
    emit(drift_detected(DATASET, [drift("n2", "amount PSI 0.41")], retraining="wanted"))

    def drift_runs() -> list:
        return [r for r in flow_runs(deployment.id) if r.parameters.get("trigger") == "drift"]

    [run] = wait_until(drift_runs, 45, "a flow run of the retrain deployment")
    time.sleep(2)  # the night that retrained itself would have had its run by now
    assert len(drift_runs()) == 1
    assert run.parameters["trigger_reasons"] == ["drift in n2: amount PSI 0.41"]
    assert run.parameters["config"] == str(served["config"].resolve())

    # The run runs (as the served runner would run it): nothing to train on yet, so skipped.
    record = run_flow(retrain_flow, flow_run=run, parameters=run.parameters)
    assert record["trigger"] == "drift" and record["decision"] == "skipped"
    assert record["trigger_reasons"] == ["drift in n2: amount PSI 0.41"]
    [after] = [r for r in flow_runs(deployment.id) if r.id == run.id]
    assert after.state.is_completed()

    def skipped() -> list:
        found = read_events(DATASET, since, prefix="aeflow.retrain.skipped")
        return [e for e in found if f"prefect.flow-run.{run.id}" in related(e, "flow-run")]

    [event] = wait_until(skipped, 30, "the run's aeflow.retrain.skipped event")
    assert event.payload["trigger"] == "drift"


def test_a_refused_challenger_is_notified(served):
    gate = GateDecision(
        decision="refuse", reasons=["challenger AUROC 0.71 below the champion's 0.80"],
        comparisons=[], champion_version="v1", reconstruction_margin=0.0, auroc_margin=0.0,
        applied=True, champion_before="v1", champion_after="v1", promoted=False,
    )  # fmt: skip
    assert emit(model_gated(DATASET, "v2", gate, {"trigger": "drift", "run": "r"}))
    hook = served["hook"]
    [body] = wait_until(lambda: hook.heard("challenger v2 refused"), 30, "the refusal webhook")
    assert "the champion stays v1" in body["body"]
    assert "Why: challenger AUROC 0.71 below the champion's 0.80" in body["body"]


def test_a_run_whose_events_cannot_be_sent_finishes_with_its_outputs(config, monkeypatch, caplog):
    import prefect.events

    from flows.retrain import retrain_flow

    def refused(**_):
        raise RuntimeError("events API refused the connection")

    monkeypatch.setattr(prefect.events, "emit_event", refused)
    with caplog.at_level(logging.WARNING):
        record = retrain_flow(config=str(config), trigger="manual")
    assert record["decision"] == "skipped" and Path(record["record"]).is_file()
    warned = [r.getMessage() for r in caplog.records if "could not emit" in r.getMessage()]
    assert any("aeflow.retrain.skipped for events-demo (RuntimeError" in w for w in warned)
    assert any("aeflow.retrain.finished" in w for w in warned)


def test_an_unknown_notification_block_stops_serve_before_it_serves(config, capsys):
    command = ["serve", "--config", str(config), "--automations", "--notify", "slack-webhook/nope"]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert (
        "no block 'slack-webhook/nope' on the Prefect API" in error and "prefect block ls" in error
    )


def test_the_command_lists_them_and_an_install_without_blocks_keeps_the_notifications(
    served, capsys
):
    retrain = f"aeflow-retrain/{DATASET}-retrain"
    command = ["automations", "install", "--config", str(served["config"])]
    assert main([*command, "--retrain-deployment", retrain]) == 0
    printed = capsys.readouterr().out
    assert f"'aeflow {DATASET}: retrain on drift': updated" in printed
    assert printed.count("not installed (an earlier install, if any, is left as it was)") == 2
    assert main(["automations", "list", "--config", str(served["config"])]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 3 and all("[enabled]" in line for line in listed)
    assert any("on aeflow.drift.detected -> run-deployment" in line for line in listed)
    assert main([*command, "--retrain-deployment", "retrain"]) == 2
    assert "takes FLOW/DEPLOYMENT" in capsys.readouterr().err
