"""The `aeflow` command line.

Core commands (train, score, demo-data, demo) live here; further command groups register themselves
from the modules in flows/commands/ (each has `register(subparsers)`). Every handler returns an exit
code; errors a user can fix are printed as one clear message, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

from flows.commands import add_config_argument, config_and_storage
from flows.errors import (
    EXIT_BATCHES_FAILED,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_QUARANTINED,
    EXIT_STORAGE,
    EXIT_USAGE,
    BatchesFailed,
)
from flows.storage_preflight import SCORE_WRITES, TRAIN_WRITES

# Quiet, offline-friendly defaults; a user's own environment wins.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect waits 20 s for its temporary local server; a busy machine needs longer (measured: over
# 20 s at a load of 9 on 2 cores, where every command then failed without doing anything).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

EPILOG = (
    """examples:
  aeflow demo --config configs/demo.toml        generate demo data, train, score, print a summary
  aeflow train --config configs/demo.toml       train on the training window, register, promote
  aeflow score --config configs/demo.toml       validate and score every batch not yet scored
  aeflow tune --config configs/demo.toml --trials 20   search hyperparameters (docs/tuning.md)

"""
    + EXIT_CODES_HELP
)


# --------------------------------------------------------------------------------- progress
class TrainingProgress:
    """A progress bar over training epochs, fed by the trainer's per-epoch callback."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("training"),
            BarColumn(),
            TextColumn("epoch {task.completed}/{task.total}"),
            TextColumn("{task.fields[losses]}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self._task: Any = None

    def __call__(self, epoch: int, n_epochs: int, train_loss: float, val_loss: float) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("train", total=n_epochs, losses="")
        losses = f"train {train_loss:.4f}  val {val_loss:.4f}"
        self._progress.update(self._task, completed=epoch, total=n_epochs, losses=losses)

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()


def with_training_progress(run):
    """Run ``run()`` with a training progress bar fed by the trainer's per-epoch callback."""
    from tasks.training import add_progress_hook, remove_progress_hook

    progress = TrainingProgress()
    add_progress_hook(progress)
    try:
        return run()
    finally:
        remove_progress_hook(progress)
        progress.close()


# --------------------------------------------------------------------------------- summaries
def format_train_summary(result: dict[str, Any]) -> str:
    from tasks.fit_checks import calibration_text

    metrics = result["metrics"]
    gate = result.get("gate") or {}
    champion = (result.get("gate") or {}).get("champion_after") == result["version"]
    if result.get("reused"):
        # Same data, config and seed: training reproduced a registered bundle.
        status = "identical to this registered version: reused, nothing new registered" + (
            "; it is the champion" if champion else "; not the champion"
        )
    else:
        status = "champion" if result["promoted"] else "registered, not promoted"
    lines = [
        f"model version     {result['version']} ({status})",
        f"trained on        {metrics['train_rows']} rows from {len(result['training_batches'])} batches "
        f"in {metrics['fit_seconds']:.1f} s",
        f"threshold         {metrics['threshold']:.4f}, calibrated on "
        f"{calibration_text(metrics.get('calibration'))}",
    ]
    evaluation = result.get("evaluation") or {}
    if evaluation.get("auroc") is not None:
        lines.append(f"holdout AUROC     {evaluation['auroc']:.3f} (against the label column)")
    if gate:
        reasons = "; ".join(gate.get("reasons", [])) or "no reasons recorded"
        unchanged = gate.get("champion_before") == gate.get("champion_after") == result["version"]
        decision = "unchanged" if unchanged else gate.get("decision", "?")
        lines.append(f"promotion gate    {decision}: {reasons}")
    for warning in result.get("warnings", []):
        lines.append(f"warning           {warning}")
    for left_out in result.get("left_out", []):
        lines.append(f"left out          {left_out['batch_id']}: {left_out['reason']}")
    lines.append(f"model bundle      {result['bundle']}")
    if result.get("report"):
        lines.append(f"report            {result['report']}")
    return "\n".join(lines)


IGNORED_SHOWN = 20  # ignored paths printed; the run summary (JSON, artifact) lists them all


def format_score_summary(summary: dict[str, Any], scored_root: str, quarantine_root: str) -> str:
    from tasks.report.run_summary import rows_text

    lines = [
        f"model version     {summary['model_version']}",
        f"batches           {summary['batches_scored']} scored, {summary['batches_skipped']} already "
        f"scored (skipped), {summary['batches_quarantined']} quarantined",
        f"rows              {rows_text(summary, 'rows_in')} in = {summary['rows_scored']} scored + "
        f"{rows_text(summary, 'rows_quarantined')} quarantined",
        f"rows flagged      {summary['rows_flagged']} ({summary['flagged_share']:.2%} of scored rows)",
    ]
    for quarantined in summary["quarantined"]:
        lines.append(
            f"quarantined       {quarantined['batch_id']}: {quarantined.get('reason', '')}"
        )
    for warned in summary["warnings"]:
        lines.append(f"warnings          {warned['batch_id']}: {warned.get('reason', '')}")
    for flag_warning in summary.get("flag_warnings", []):
        lines.append(f"flag rate         {flag_warning}")
    for copy in summary.get("same_input", []):
        lines.append(
            f"same input        {copy['batch_id']} holds the same bytes as "
            f"{', '.join(copy['same_as'])}: its rows are in scored/ twice; if it was delivered "
            "twice, remove the copy from incoming/ and its output and marker from scored/"
        )
    ignored = summary.get("ignored") or []
    for entry in ignored[:IGNORED_SHOWN]:
        lines.append(f"ignored           {entry['path']}: {entry['reason']}")
    if len(ignored) > IGNORED_SHOWN:
        lines.append(
            f"ignored           ... and {len(ignored) - IGNORED_SHOWN} more (the run summary "
            "artifact lists them all)"
        )
    lines += [f"scored outputs    {scored_root}", f"quarantine        {quarantine_root}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- handlers
def cmd_train(args: argparse.Namespace) -> int:
    from flows.config import with_model_params
    from flows.prefect_api import require_prefect_api
    from flows.preflight import check_config_columns
    from flows.train import train_flow
    from tasks.window import parse_date

    # fail fast on a bad config or date, before Prefect starts
    cfg, _ = config_and_storage(args.config, writes=TRAIN_WRITES)
    if args.params:
        with_model_params(cfg, args.params)
    if args.until:
        parse_date(args.until, "--until")
    check_config_columns(cfg, against_model=False)
    require_prefect_api()
    result = with_training_progress(
        lambda: train_flow(
            config=args.config,
            until=args.until,
            batches=args.batch,
            promote=not args.no_promote,
            params=args.params,
        )
    )
    print("\n" + format_train_summary(result))
    return 0


def check_model_version(cfg: Any, layout: Any, version: str | None) -> None:
    """Fail fast, before Prefect starts, on a --model-version that is not a registry entry (a path
    such as ../../x is refused by name, an unknown version lists the known ones)."""
    if version not in (None, "champion"):
        layout.registry().entry(version)


def cmd_score(args: argparse.Namespace) -> int:
    from flows.prefect_api import require_prefect_api
    from flows.preflight import check_config_columns
    from flows.score import run_score

    cfg, layout = config_and_storage(args.config, writes=SCORE_WRITES)
    check_model_version(cfg, layout, args.model_version)
    check_config_columns(cfg, args.model_version)  # before Prefect starts or a batch is touched
    require_prefect_api()
    summary = run_score(
        args.config,
        model_version=args.model_version,
        force=args.force,
        workers=args.workers,
        dask=args.dask,
    )
    print("\n" + format_score_summary(summary, layout.scored, layout.quarantine()))
    return quarantine_exit(summary, args.fail_on_quarantine)


def _special_days(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """The drifted and malformed day indices: as given, or the defaults for the number of days."""
    from tasks.demo_data import default_special_days

    drift, malformed = default_special_days(args.days)
    chosen = []
    for given, default in ((args.drift_day, drift), (args.malformed_day, malformed)):
        if given is None:
            chosen.append(default)
        elif given.lower() == "none":
            chosen.append(None)
        else:
            try:
                chosen.append(int(given))
            except ValueError:
                raise ValueError(
                    f"--drift-day/--malformed-day take a day index (0 = the first day, -1 = the "
                    f"last) or 'none', got {given!r}"
                ) from None
    return chosen[0], chosen[1]


def _generate_demo_data(args: argparse.Namespace, out: str) -> Any:
    """The demo batches the command's options ask for, written to ``out``; the manifest."""
    from tasks.demo_data import generate_demo_data

    drift_day, malformed_day = _special_days(args)
    return generate_demo_data(
        out,
        days=args.days,
        rows_per_day=args.rows_per_day,
        seed=args.seed,
        drift_day=drift_day,
        malformed_day=malformed_day,
    )


def cmd_demo_data(args: argparse.Namespace) -> int:
    print(_generate_demo_data(args, args.out).to_json())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.prefect_api import require_prefect_api
    from flows.score import run_score
    from flows.train import train_flow
    from tasks.io import remove

    cfg, layout = config_and_storage(args.config)
    if not 1 <= args.train_days <= args.days:
        raise ValueError(
            f"--train-days must be between 1 and --days ({args.days}), got {args.train_days}"
        )
    require_prefect_api()
    opts = cfg.storage.options
    # The demo starts from a clean slate for its dataset (the model registry is kept).
    for folder in (layout.incoming, layout.quarantine(), layout.scored):
        remove(folder, opts)
    print(
        f"generating {args.days} days x {args.rows_per_day} rows of demo data into {layout.incoming}"
    )
    manifest = _generate_demo_data(args, layout.incoming)
    train_until = manifest.batch_ids[args.train_days - 1]
    trained = with_training_progress(lambda: train_flow(config=args.config, until=train_until))
    summary = run_score(args.config)
    print("\n=== aeflow demo summary ===")
    print(format_train_summary(trained))
    print(format_score_summary(summary, layout.scored, layout.quarantine()))
    drifted = manifest.drift_batch_id or "none"
    malformed = manifest.malformed_batch_id or "none"
    kind = f" ({manifest.malformation_kind})" if manifest.malformation_kind else ""
    print(
        f"demo data         {manifest.days} days; drifted day {drifted}, malformed day {malformed}{kind}"
    )
    return 0


# ------------------------------------------------------------------------------------ parser
def _add_special_days(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--drift-day",
        metavar="INDEX|none",
        help="the day whose rows drift (0 = the first, -1 = the last; default -3, none with "
        "fewer than 3 days)",
    )
    parser.add_argument(
        "--malformed-day",
        metavar="INDEX|none",
        help="the day written malformed (default -2, none with fewer than 3 days)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aeflow",
        description="Batch tabular anomaly detection and learned features: validate, train, score.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser(
        "train",
        help="train a detector on the training window, evaluate it, promote it through the gate",
        description="Run the train flow: validate the training window's batches, fit the "
        "autoencoder on the accepted ones, register the bundle under <root>/models/<dataset>/, "
        "evaluate it on a holdout beside the champion and baselines, write an HTML report, and make "
        "it the champion when the promotion gate passes.",
    )
    add_config_argument(train)
    train.add_argument(
        "--until",
        metavar="YYYY-MM-DD",
        help="last day of the training window (training.window_days days of batches, by each "
        "batch's date; default: the newest batch's date)",
    )
    train.add_argument(
        "--batch", action="append", metavar="BATCH_ID", help="train on this batch (repeatable)"
    )
    train.add_argument(
        "--no-promote", action="store_true", help="register without making it the champion"
    )
    train.add_argument(
        "--params",
        metavar="FILE",
        help="detector parameters laid over the config's [model] section: a TOML file with a "
        "[model] table, such as the best-params.toml `aeflow tune` writes; the gate decides as usual",
    )
    train.set_defaults(handler=cmd_train)

    score = sub.add_parser(
        "score",
        help="validate and score every batch in incoming/ not yet scored",
        description="Run the score flow: each batch in <root>/incoming/<dataset>/ not yet scored by "
        "the model is validated; failures are quarantined with a report, the rest are scored into "
        "<root>/scored/<dataset>/date=YYYY-MM-DD/<batch_id>.parquet.",
    )
    add_config_argument(score)
    score.add_argument("--model-version", help="score with this version instead of the champion")
    score.add_argument("--force", action="store_true", help="re-score batches already scored")
    score.add_argument("--workers", type=int, help="batches scored concurrently (config default)")
    score.add_argument(
        "--dask",
        metavar="ADDRESS|local",
        help="run on a Dask cluster: a scheduler address (tcp://host:8786), or 'local' for a "
        "temporary LocalCluster of --workers processes (needs the dask extra)",
    )
    add_fail_on_quarantine(score)
    score.set_defaults(handler=cmd_score)

    demo_data = sub.add_parser(
        "demo-data",
        help="generate seeded demo card-transaction batches",
        description="Write one Parquet batch per day of synthetic card transactions with labelled "
        "injected anomalies, one drifted day and one malformed day. Same seed, same bytes.",
    )
    demo_data.add_argument("--out", required=True, metavar="DIR", help="output folder")
    demo_data.add_argument("--days", type=int, default=10, help="number of daily batches (10)")
    demo_data.add_argument(
        "--rows-per-day", type=int, default=20_000, help="rows per batch (20000)"
    )
    demo_data.add_argument("--seed", type=int, default=0, help="random seed (0)")
    _add_special_days(demo_data)
    demo_data.set_defaults(handler=cmd_demo_data)

    demo = sub.add_parser(
        "demo",
        help="generate demo data, train, score and print a summary (the end-to-end job)",
        description="Start the demo dataset from a clean slate under the config's storage root, "
        "generate demo data into incoming/, train on the first days, score every day, and print a "
        "summary. Uses Prefect's temporary local server unless PREFECT_API_URL is set.",
    )
    add_config_argument(demo)
    demo.add_argument("--days", type=int, default=10, help="number of daily batches (10)")
    demo.add_argument("--rows-per-day", type=int, default=20_000, help="rows per batch (20000)")
    demo.add_argument("--train-days", type=int, default=6, help="train on the first N days (6)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
    _add_special_days(demo)
    demo.set_defaults(handler=cmd_demo)

    import flows.commands as commands

    for module in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"flows.commands.{module}").register(sub)
    return parser


class ExplainedErrorsWithoutTracebacks(logging.Filter):
    """Drop the traceback from Prefect's log record of an error whose message already says what
    happened and what to do (a storage failure, a refused model version): the run's log keeps the
    message, the terminal ends in one `aeflow: error:` line rather than a stack of frames."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, explained_errors()):
            record.exc_info, record.exc_text = None, None
        return True


def explained_errors() -> tuple[type[BaseException], ...]:
    """The errors :func:`main` reports in one `aeflow: error:` line (their message says what
    happened and what to do): storage, config, registry, argument and data errors, and batches
    that failed to score."""
    from flows.config import ConfigError
    from models.registry import RegistryError
    from models.storage_errors import StorageError

    return (StorageError, ConfigError, RegistryError, FileNotFoundError, ValueError, BatchesFailed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from flows.config import ConfigError
    from flows.prefect_api import (
        EXIT_PREFECT_API_LOST,
        PrefectApiUnavailable,
        command_owns_process,
        grace_seconds,
    )
    from models.cpu import explicit_torch_threads
    from models.registry import RegistryError
    from models.storage_errors import StorageError

    if not os.environ.get("AEFLOW_DEBUG"):
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addFilter(ExplainedErrorsWithoutTracebacks())

    try:
        # Settings from the environment fail here, before any flow starts.
        grace_seconds()
        explicit_torch_threads()
        # This process exists for the command: a flow run whose Prefect API goes away stops it.
        with command_owns_process():
            return int(args.handler(args) or 0)
    except PrefectApiUnavailable as exc:
        print(f"aeflow: error: {exc}", file=sys.stderr)
        return EXIT_PREFECT_API_LOST
    except StorageError as exc:
        if os.environ.get("AEFLOW_DEBUG"):
            raise
        print(f"aeflow: error: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except (ConfigError, RegistryError, FileNotFoundError, ValueError) as exc:
        if os.environ.get("AEFLOW_DEBUG"):
            raise
        print(f"aeflow: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BatchesFailed as exc:
        print(f"aeflow: error: {exc}", file=sys.stderr)
        return EXIT_BATCHES_FAILED
    except KeyboardInterrupt:
        print("aeflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # storage down or refusing access, wherever the command met it
        from models.storage_errors import as_storage_error

        problem = as_storage_error(exc, _storage_root(args), f"running `aeflow {args.command}`")
        if problem is None or os.environ.get("AEFLOW_DEBUG"):
            raise
        print(f"aeflow: error: {problem}", file=sys.stderr)
        return EXIT_STORAGE


def _storage_root(args: argparse.Namespace) -> str:
    """The storage root of the command's config, to name in a storage error."""
    try:
        from flows.config import load_config

        return load_config(args.config).storage_root
    except Exception:  # no config (or a broken one): say what is known
        return "(the configured storage)"


def quarantine_exit(summary: dict[str, Any], fail_on_quarantine: bool) -> int:
    """The exit code of a scoring run: EXIT_QUARANTINED when asked to fail on quarantine and a
    batch was quarantined (said in one line on stderr), else 0."""
    quarantined = summary["batches_quarantined"]
    if not (fail_on_quarantine and quarantined):
        return 0
    print(
        f"aeflow: {quarantined} batch(es) quarantined; exit {EXIT_QUARANTINED} "
        "(--fail-on-quarantine)",
        file=sys.stderr,
    )
    return EXIT_QUARANTINED


def add_fail_on_quarantine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-on-quarantine",
        action="store_true",
        help=f"exit {EXIT_QUARANTINED} when the run quarantined a batch (for schedulers and CI); "
        "the other batches are scored as usual",
    )


if __name__ == "__main__":
    sys.exit(main())
