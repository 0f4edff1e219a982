"""Deployments of one pipeline config: what `aeflow serve` serves and infra/prefect.yaml declares.

- ``<dataset>-nightly`` (flow ``aeflow-nightly``): cron ``schedule.nightly`` (02:00 by default);
- ``<dataset>-retrain`` (flow ``aeflow-retrain``): cron ``schedule.retrain`` (weekly by default),
  trigger "schedule";
- ``<dataset>-backfill`` and ``<dataset>-score``: no schedule, run on demand, e.g.
  ``prefect deployment run aeflow-backfill/demo-backfill -p start=2026-01-01 -p end=2026-01-07``.

Every deployment carries the config file's absolute path as its ``config`` parameter, so the
serving process (or a worker) must see the same file at the same path.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from flows.config import load_config

TAGS = ("aeflow",)


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: the flow's name, the deployment's name, its cron (or None) and parameters."""

    flow_name: str
    name: str
    cron: str | None
    timezone: str
    parameters: dict[str, Any]
    description: str

    @property
    def full_name(self) -> str:
        """``flow/deployment``, as `prefect deployment run` takes it."""
        return f"{self.flow_name}/{self.name}"


def deployment_specs(
    config: str,
    nightly_cron: str | None = None,
    retrain_cron: str | None = None,
    timezone: str | None = None,
) -> list[DeploymentSpec]:
    """The deployments of a config, crons from its `schedule` section unless overridden."""
    from tasks.settings import ScheduleSettings

    path = str(Path(config).resolve())
    cfg = load_config(path)
    # Overrides go through the same validation as the config file.
    schedule = ScheduleSettings(
        nightly=nightly_cron or cfg.schedule.nightly,
        retrain=retrain_cron or cfg.schedule.retrain,
        timezone=timezone or cfg.schedule.timezone,
    )
    dataset, tz = cfg.dataset, schedule.timezone
    return [
        DeploymentSpec(
            "aeflow-nightly",
            f"{dataset}-nightly",
            schedule.nightly,
            tz,
            {"config": path},
            f"Score {dataset}'s new batches with the champion, measure drift, retrain on a trigger.",
        ),
        DeploymentSpec(
            "aeflow-retrain",
            f"{dataset}-retrain",
            schedule.retrain,
            tz,
            {"config": path, "trigger": "schedule"},
            f"Retrain {dataset} on its recent accepted batches; promote through the gate.",
        ),
        DeploymentSpec(
            "aeflow-backfill",
            f"{dataset}-backfill",
            None,
            tz,
            {"config": path},
            f"Re-score a date range of {dataset} (parameters start, end, model_version).",
        ),
        DeploymentSpec(
            "aeflow-score",
            f"{dataset}-score",
            None,
            tz,
            {"config": path},
            f"Validate and score every batch of {dataset} not yet scored by the champion.",
        ),
        DeploymentSpec(
            "aeflow-tune",
            f"{dataset}-tune",
            None,
            tz,
            {"config": path},
            f"Search {dataset}'s detector hyperparameters ([tuning]); resumes the study by name.",
        ),
    ]


def _flow_of(flow_name: str):
    from flows.backfill import backfill_flow
    from flows.nightly import nightly_flow
    from flows.retrain import retrain_flow
    from flows.score import score_flow
    from flows.tune import tune_flow

    flows = {
        "aeflow-nightly": nightly_flow,
        "aeflow-retrain": retrain_flow,
        "aeflow-backfill": backfill_flow,
        "aeflow-score": score_flow,
        "aeflow-tune": tune_flow,
    }
    return flows[flow_name]


# Flows that map tasks over batches (or trials): the ones a Dask cluster speeds up.
BATCH_FLOWS = ("aeflow-nightly", "aeflow-backfill", "aeflow-score", "aeflow-tune")


def build_deployments(specs: list[DeploymentSpec], task_runner: Any = None) -> list[Any]:
    """Prefect RunnerDeployments for :func:`prefect.serve`, one per spec; ``task_runner`` (e.g. a
    DaskTaskRunner) replaces the default thread pool of the flows that process batches."""
    from prefect.schedules import Cron

    deployments = []
    for spec in specs:
        flow = _flow_of(spec.flow_name)
        if task_runner is not None and spec.flow_name in BATCH_FLOWS:
            # Served runs execute this very flow object, so the runner travels with it.
            flow = flow.with_options(task_runner=task_runner)
        dataset_tag = spec.name.rsplit("-", 1)[0]
        deployments.append(
            flow.to_deployment(
                name=spec.name,
                schedules=[Cron(spec.cron, timezone=spec.timezone)] if spec.cron else None,
                parameters=spec.parameters,
                description=spec.description,
                tags=[*TAGS, dataset_tag],
            )
        )
    return deployments


def bounded_runner(guard: Any, limit: int | None = None) -> Any:
    """A Prefect runner (at most ``limit`` runs at a time) whose SIGTERM and Ctrl-C go through
    ``guard`` (:class:`flows.prefect_api.ShutdownGuard`)."""
    import asyncio

    from prefect.runner import Runner

    class BoundedRunner(Runner):
        """Prefect's runner, stopped through the guard: Prefect's own SIGTERM handler exits
        without stopping the runs and then pauses the schedules with retries that last minutes
        when the API is down."""

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            self.stop_serving("SIGTERM")

        def stop_serving(self, signal_name: str) -> None:
            client = getattr(self, "_client", None)
            api_url = str(client.api_url).rstrip("/") if client is not None else None
            if not self.started:
                # Still starting: nothing to stop yet. The guard still checks the API (from the
                # environment until the runner has a client), so a lost API exits with its code.
                guard.begin(signal_name, api_url or os.environ.get("PREFECT_API_URL") or None)
                raise KeyboardInterrupt
            if not guard.begin(signal_name, api_url):
                return
            self.pause_on_shutdown = guard.pause_schedules
            asyncio.get_running_loop().create_task(self.astop())

    return BoundedRunner(pause_on_shutdown=True, limit=limit)


def serve(
    specs: list[DeploymentSpec],
    limit: int | None = None,
    task_runner: Any = None,
    shutdown_timeout_s: float = 30.0,
    on_deployed: Callable[[dict[str, UUID]], None] | None = None,
) -> int:
    """Serve the deployments until SIGTERM or Ctrl-C: scheduled and ad-hoc runs execute in
    subprocesses of this process (at most ``limit`` at a time). Needs a Prefect API
    (PREFECT_API_URL) that outlives it. ``on_deployed`` is called with {deployment name: id} once
    the deployments exist on the API, before serving starts (e.g. to install automations that
    run them).

    Stopping takes at most ``shutdown_timeout_s`` seconds: runs in flight are asked to stop and
    the schedules are paused while the API answers; when it does not, they are left as they are.
    Returns the exit code: 0 after a clean stop, :data:`flows.errors.EXIT_PREFECT_API_LOST` (5)
    when the API did not answer or the stop ran out of time.
    """
    import asyncio

    from flows.prefect_api import ShutdownGuard

    guard = ShutdownGuard(shutdown_timeout_s)
    runner = bounded_runner(guard, limit)
    deployed = {
        deployment.name: runner.add_deployment(deployment)
        for deployment in build_deployments(specs, task_runner)
    }
    if on_deployed is not None:
        on_deployed(deployed)
    # Ctrl-C goes through the guard too (asyncio keeps a handler that is not Python's default).
    previous = signal.signal(signal.SIGINT, lambda *_: runner.stop_serving("Ctrl-C"))
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        if not guard.exit_code:
            raise  # interrupted while starting, the API answering: the CLI says so (130)
    finally:
        signal.signal(signal.SIGINT, previous)
    return guard.exit_code


def trigger_help(specs: list[DeploymentSpec], config: str) -> str:
    """How a person runs each deployment by hand (printed by `aeflow serve`)."""
    lines = ["deployments:"]
    for spec in specs:
        when = f"cron '{spec.cron}' ({spec.timezone})" if spec.cron else "on demand"
        lines.append(f"  {spec.full_name:<34} {when}")
    by_flow = {spec.flow_name: spec for spec in specs}
    lines += [
        "",
        "run one now:",
        f"  prefect deployment run {by_flow['aeflow-nightly'].full_name}",
        f"  prefect deployment run {by_flow['aeflow-nightly'].full_name} -p date=2026-01-08",
        f"  prefect deployment run {by_flow['aeflow-retrain'].full_name} -p trigger=manual",
        f"  prefect deployment run {by_flow['aeflow-backfill'].full_name} "
        "-p start=2026-01-01 -p end=2026-01-07",
        f"  aeflow nightly --config {config} --date 2026-01-08   (in this shell, no server needed)",
    ]
    return "\n".join(lines)
