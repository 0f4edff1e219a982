"""`aeflow nightly | retrain | backfill | serve`: living with the pipeline.

Each command runs its flow in this process (Prefect's temporary local server unless PREFECT_API_URL
points at a real one), shows a progress bar while a model trains, and ends with a short summary.
`serve` is the long-running process that runs the deployments on their cron schedules.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from flows.commands import add_config_argument, config_and_storage


# ------------------------------------------------------------------------------- summaries
def format_retrain_summary(result: dict[str, Any]) -> str:
    if result.get("version") is None:
        return f"retraining        skipped, {result['reason']}"
    window = result["window"]
    reused = " (identical to this registered version: reused)" if result.get("reused") else ""
    lines = [
        f"retrained         {result['version']}{reused} on {result['train_rows']} rows of "
        f"{len(window['batches'])} accepted batches ({window['first_date']}..{window['last_date']})",
    ]
    if window["rows_left_out"]:
        lines.append(
            f"left out          {window['rows_left_out']} rows: "
            f"{window.get('flagged_left_out', 0)} the champion had flagged as anomalies, "
            f"{window.get('confirmed_left_out', 0)} analysts confirmed as anomalies"
        )
    if window.get("false_positives_kept"):
        lines.append(
            f"kept              {window['false_positives_kept']} flagged rows analysts marked "
            "false positives"
        )
    outcome = "promoted to champion" if result["promoted"] else "kept as challenger (not promoted)"
    lines += [
        f"trigger           {result['trigger']}: {'; '.join(result['trigger_reasons']) or '-'}",
        f"gate              {outcome}",
        f"why               {result['reason']}",
        f"champion          {result['champion_after']}",
    ]
    for warning in result.get("warnings", []):
        lines.append(f"warning           {warning}")
    if result.get("report"):
        lines.append(f"evaluation report {result['report']}")
    lines.append(f"record            {result['record']}")
    return "\n".join(lines)


def format_nightly_summary(result: dict[str, Any]) -> str:
    from flows.cli import format_score_summary

    score = result["score"]
    lines = [f"night             {result['night']} ({result['dataset']})"]
    if score["batches_scored"] + score["batches_quarantined"] + score["batches_skipped"] == 0:
        lines.append("batches           none tonight (nothing new in incoming/)")
    else:
        lines.append(format_score_summary(score, result["scored_root"], result["quarantine_root"]))
    for drift in result["drift"]:
        columns = ", ".join(drift["drifted_columns"]) or "-"
        lines.append(
            f"drift             {drift['batch_id']}: {drift['status']} (drifted columns: {columns}; "
            f"score PSI {drift['score_psi'] if drift['score_psi'] is not None else 'n/a'})"
        )
    feedback = result.get("feedback")
    if feedback:
        lines.append(f"flag precision    {feedback['champion']['reason']}")
    decision = result["retrain_decision"]
    if not decision["retrain"]:
        lines.append("retrain trigger   none")
    else:
        for reason in decision["reasons"]:
            lines.append(f"retrain trigger   {reason}")
        if result["retrain"] is None:
            lines.append("retraining        not run (--no-retrain)")
        else:
            lines.append(format_retrain_summary(result["retrain"]))
    lines.append(f"night report      {result['report']}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- progress
class BatchProgress:
    """A progress bar over batches while a flow processes them, fed by what lands on storage.

    A background thread counts the batches whose success marker was written after the bar started,
    or that were quarantined since, so it works whatever runs the tasks (threads or a Dask
    cluster). Batches a run skips (already done) complete the bar when the run ends.
    """

    def __init__(self, storage: Any, batch_ids: list[str], label: str = "scoring") -> None:
        self.storage = storage
        self.batch_ids = list(batch_ids)
        self.label = label

    def _done(self, since: str) -> int:
        from tasks.io import exists, read_json

        done, options = 0, self.storage.options
        for batch_id in self.batch_ids:
            marker = read_json(self.storage.success_marker(batch_id), options) or {}
            quarantined = exists(self.storage.quarantine_report(batch_id), options)
            done += bool(marker.get("scored_at", "") >= since or quarantined)
        return done

    def __enter__(self) -> BatchProgress:
        import datetime as dt
        import threading

        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._since = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        self._stop = threading.Event()
        self._progress = Progress(
            TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        )
        self._task = self._progress.add_task(self.label, total=len(self.batch_ids))
        self._progress.start()

        def poll() -> None:
            while not self._stop.wait(1.0):
                self._progress.update(self._task, completed=self._done(self._since))

        self._thread = threading.Thread(target=poll, name="aeflow-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self._stop.set()
        self._thread.join()
        if kind is None:
            self._progress.update(self._task, completed=len(self.batch_ids))
        self._progress.stop()


# -------------------------------------------------------------------------------- handlers
def _task_runner(dask: str | None, workers: int | None, default_workers: int) -> Any:
    from flows.score import task_runner_for

    return task_runner_for(default_workers if workers is None else workers, dask)


def cmd_nightly(args: argparse.Namespace) -> int:
    from flows.cli import quarantine_exit, with_training_progress
    from flows.nightly import nightly_flow
    from flows.prefect_api import require_prefect_api
    from flows.preflight import check_config_columns
    from flows.storage_preflight import NIGHTLY_WRITES
    from tasks.window import parse_date

    # fail fast on a bad config, date or storage, before Prefect starts
    cfg, layout = config_and_storage(args.config, writes=NIGHTLY_WRITES)
    if args.date:
        parse_date(args.date)
    check_config_columns(cfg)
    require_prefect_api()
    runner = _task_runner(args.dask, args.workers, cfg.scoring.workers)
    result = with_training_progress(
        lambda: nightly_flow.with_options(task_runner=runner)(
            config=args.config, date=args.date, retrain=not args.no_retrain
        )
    )
    result = {**result, "scored_root": layout.scored, "quarantine_root": layout.quarantine()}
    print("\n" + format_nightly_summary(result))
    return quarantine_exit(result["score"], args.fail_on_quarantine)


def cmd_retrain(args: argparse.Namespace) -> int:
    from flows.cli import with_training_progress
    from flows.prefect_api import require_prefect_api
    from flows.preflight import check_config_columns
    from flows.retrain import retrain_flow
    from flows.storage_preflight import TRAIN_WRITES
    from tasks.window import parse_date

    cfg, _ = config_and_storage(args.config, writes=TRAIN_WRITES)
    if args.until:
        parse_date(args.until, "--until")
    check_config_columns(cfg, against_model=False, suite_required=False)
    require_prefect_api()
    result = with_training_progress(
        lambda: retrain_flow(
            config=args.config,
            until=args.until,
            trigger="manual",
            trigger_reasons=[args.reason] if args.reason else [],
            exclude_flagged=None if args.exclude_flagged is None else args.exclude_flagged,
            promote=not args.no_promote,
        )
    )
    print("\n" + format_retrain_summary(result))
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from flows.backfill import backfill_flow
    from flows.cli import check_model_version, format_score_summary, quarantine_exit
    from flows.prefect_api import require_prefect_api
    from flows.preflight import check_config_columns
    from flows.storage_preflight import SCORE_WRITES
    from tasks.batch_dates import batch_dates
    from tasks.io import list_batches
    from tasks.window import parse_date, select_date_range

    cfg, layout = config_and_storage(args.config, writes=SCORE_WRITES)
    parse_date(args.start, "--from")
    parse_date(args.end, "--to")
    check_config_columns(cfg, args.model_version)
    require_prefect_api()
    check_model_version(cfg, layout, args.model_version)
    runner = _task_runner(args.dask, args.workers, cfg.scoring.workers)
    opts, cols = cfg.storage.options, cfg.columns
    available = list_batches(layout.incoming, opts)
    dates = batch_dates(available, storage=layout, columns=cols)
    in_range = [b.batch_id for b in select_date_range(available, args.start, args.end, dates)]
    with BatchProgress(layout, in_range, "re-scoring"):
        summary = backfill_flow.with_options(task_runner=runner)(
            config=args.config,
            start=args.start,
            end=args.end,
            model_version=args.model_version,
            force=args.force,
        )
    print(f"\nbackfill          {args.start}..{args.end}")
    print(format_score_summary(summary, layout.scored, layout.quarantine()))
    return quarantine_exit(summary, args.fail_on_quarantine)


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.deployments import deployment_specs, serve, trigger_help
    from flows.prefect_api import require_prefect_api

    if args.notify and args.automations is None:
        raise ValueError("--notify names the block the automations notify: add --automations")
    specs = deployment_specs(args.config, args.nightly_cron, args.retrain_cron, args.timezone)
    require_prefect_api()
    print(trigger_help(specs, args.config))
    if not os.environ.get("PREFECT_API_URL"):
        print(
            "\nnote: PREFECT_API_URL is not set, so runs go to a temporary local server that stops "
            "with this process; for a server that outlives it, run `prefect server start` and "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` (docs/operations.md)"
        )
    runner = None
    if args.dask:
        from flows.config import load_config

        runner = _task_runner(args.dask, args.workers, load_config(args.config).scoring.workers)
    on_deployed = None
    if args.automations is not None:
        on_deployed = _automation_installer(args, specs)
    print("\nserving; stop with Ctrl-C or SIGTERM", flush=True)
    return serve(
        specs,
        limit=args.limit,
        task_runner=runner,
        shutdown_timeout_s=args.stop_timeout,
        on_deployed=on_deployed,
    )


def _automation_installer(args: argparse.Namespace, specs: list[Any]) -> Any:
    """What `serve --automations` does once its deployments exist: install the automations with
    the served retrain deployment (flows/automations.py) and say what changed. The definitions
    file and the notification blocks are checked now, before anything is served."""
    from prefect.client.orchestration import get_client

    from flows.automations import (
        AutomationRequest,
        default_automations_file,
        install_for_config,
        load_definitions,
        resolve_block,
    )

    [retrain] = [spec.name for spec in specs if spec.flow_name == "aeflow-retrain"]
    load_definitions(args.automations or default_automations_file())
    with get_client(sync_client=True) as client:
        blocks = tuple(str(resolve_block(client, reference)) for reference in args.notify)

    def install(deployed: dict[str, Any]) -> None:
        request = AutomationRequest(
            file=args.automations or None, notify=blocks, retrain_deployment=deployed[retrain]
        )
        print("\n".join(["", *install_for_config(args.config, request)]), flush=True)

    return install


# ---------------------------------------------------------------------------------- parser
def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return seconds


def _add_runner(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", type=int, help="batches processed concurrently (scoring.workers)"
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the batches' tasks on a Dask cluster: 'local' (a temporary LocalCluster of "
        "--workers processes) or a scheduler address (tcp://host:8786); needs prefect-dask",
    )


def register(subparsers: Any) -> None:
    from flows.cli import add_fail_on_quarantine
    from flows.commands.automations import add_notify_argument

    nightly = subparsers.add_parser(
        "nightly",
        help="score tonight's batches, measure drift, retrain when a trigger fires",
        description="Run the nightly flow: validate and score the night's batches with the "
        "champion (quarantining what fails the contract), measure drift against the champion's "
        "training data (reports under <root>/reports/<dataset>/drift/), and retrain when a batch "
        "drifted, the champion is older than retrain.max_model_age_days, or its flag precision "
        "from analysts' verdicts fell below feedback.precision_floor. The challenger is "
        "promoted only through the promotion gate.",
    )
    add_config_argument(nightly)
    nightly.add_argument(
        "--date",
        metavar="YYYY-MM-DD",
        help="process the batches dated this day (columns.batch_date: the timestamp column, a "
        "date in the batch id, or the arrival; default: every batch not scored yet)",
    )
    nightly.add_argument(
        "--no-retrain", action="store_true", help="report retraining triggers but do not retrain"
    )
    _add_runner(nightly)
    add_fail_on_quarantine(nightly)
    nightly.set_defaults(handler=cmd_nightly)

    retrain = subparsers.add_parser(
        "retrain",
        help="train a challenger on the recent accepted batches and gate it",
        description="Run the retrain flow: train a challenger on the accepted (validated and "
        "scored) batches of the last retrain.window_days days, leaving out rows the champion "
        "flagged unless --keep-flagged (but keeping those analysts marked false positives) and "
        "rows analysts confirmed as anomalies (feedback.exclude_confirmed), evaluate it against "
        "the champion on the same holdout and promote it only when the gate passes. The decision "
        "and its reasons are recorded.",
    )
    add_config_argument(retrain)
    retrain.add_argument(
        "--until", metavar="YYYY-MM-DD", help="last day of the window (the newest accepted batch)"
    )
    retrain.add_argument("--reason", help="why you are retraining (kept in the record)")
    flagged = retrain.add_mutually_exclusive_group()
    flagged.add_argument(
        "--exclude-flagged",
        dest="exclude_flagged",
        action="store_true",
        default=None,
        help="leave out rows the champion flagged (retrain.exclude_flagged)",
    )
    flagged.add_argument(
        "--keep-flagged",
        dest="exclude_flagged",
        action="store_false",
        help="train on every accepted row, flagged or not",
    )
    retrain.add_argument(
        "--no-promote",
        action="store_true",
        help="evaluate and record the gate's decision without changing the champion",
    )
    retrain.set_defaults(handler=cmd_retrain)

    backfill = subparsers.add_parser(
        "backfill",
        help="re-score a date range with a chosen model version",
        description="Run the backfill flow: validate and re-score every batch in incoming/ dated "
        "START..END (each batch's date: columns.batch_date) with --model-version (the champion by "
        "default). Batches already scored by that version are skipped unless --force; other "
        "outputs of a batch are replaced, never appended to.",
    )
    add_config_argument(backfill)
    backfill.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--model-version", help="score with this version (the champion)")
    backfill.add_argument(
        "--force", action="store_true", help="re-score batches already scored by the version"
    )
    _add_runner(backfill)
    add_fail_on_quarantine(backfill)
    backfill.set_defaults(handler=cmd_backfill)

    serve = subparsers.add_parser(
        "serve",
        help="serve the deployments with their cron schedules (long-running)",
        description="Create the deployments of this config on the Prefect API (PREFECT_API_URL) "
        "and run their scheduled and ad-hoc runs in this process until interrupted: "
        "<dataset>-nightly (schedule.nightly, 02:00 by default), <dataset>-retrain "
        "(schedule.retrain, weekly), <dataset>-backfill and <dataset>-score (on demand, e.g. "
        "`prefect deployment run aeflow-nightly/<dataset>-nightly`). With --automations, also "
        "the Prefect automations that act on aeflow's events (docs/events.md).",
    )
    add_config_argument(serve)
    serve.add_argument("--nightly-cron", metavar="CRON", help="override schedule.nightly")
    serve.add_argument("--retrain-cron", metavar="CRON", help="override schedule.retrain")
    serve.add_argument("--timezone", metavar="TZ", help="override schedule.timezone")
    serve.add_argument("--limit", type=int, help="most flow runs at the same time (no limit)")
    serve.add_argument(
        "--stop-timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM or Ctrl-C, exit within this many seconds whatever is still waiting (30); "
        "exit code 0 after a clean stop (runs in flight stopped, schedules paused), 5 when the "
        "Prefect API did not answer (schedules left active) or the stop ran out of time",
    )
    serve.add_argument(
        "--automations",
        nargs="?",
        const="",
        metavar="FILE",
        help="also install the Prefect automations of FILE (infra/automations.yaml by default) "
        "for this dataset: notify on a quarantined batch and on a refused challenger (with "
        "--notify), run <dataset>-retrain on drift a night did not retrain on; installing again "
        "updates them, never duplicates (docs/events.md)",
    )
    add_notify_argument(serve)
    _add_runner(serve)
    serve.set_defaults(handler=cmd_serve)
