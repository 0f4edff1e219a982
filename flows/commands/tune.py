"""`aeflow tune`: hyperparameter search as a Prefect flow (see docs/tuning.md)."""

from __future__ import annotations

import argparse
from typing import Any

from flows.commands import add_config_argument


def format_tune_summary(summary: dict[str, Any]) -> str:
    objective = summary["objective"]
    trials = summary["trials"]
    run = summary["this_run"]
    lines = [
        f"study             {summary['study']} ({summary['dataset']}), seed {summary['seed']}",
        f"objective         {objective['name']} ({objective['direction']}): {objective['statement']}",
        f"limits            {objective['limits']}",
        f"trials            {trials.get('complete', 0)} complete, {trials.get('pruned', 0)} pruned, "
        f"{trials.get('fail', 0)} failed; {run['trials_run']} run now in {run['seconds']:.1f} s"
        + (" (stopped by --timeout)" if run["stopped_by"] == "timeout" else ""),
        f"best trial        #{summary['best_trial']}: {summary['best_value']}",
        f"config defaults   {summary['default_value']}",
        f"winner            {summary['winner']}",
        f"rows              {summary['rows']['fit']} fit, {summary['rows']['validation']} validation; "
        f"the {summary['rows']['holdout_untouched']} holdout rows were not read",
        f"parameters        {summary['files']['best-params.toml']}",
        f"report            {summary['files']['report.html']}",
        f"next              aeflow train --config {summary['config']} "
        f"--params {summary['files']['best-params.toml']}",
    ]
    return "\n".join(lines)


def cmd_tune(args: argparse.Namespace) -> int:
    from flows.commands import config_and_storage
    from flows.prefect_api import require_prefect_api
    from flows.preflight import check_config_columns
    from flows.score import task_runner_for
    from flows.tune import run_tune, tuning_settings
    from tasks.window import parse_date

    # fail fast on a bad config or storage, before Prefect starts
    cfg, _ = config_and_storage(args.config, writes=("reports",))
    tuning = tuning_settings(
        cfg.tuning,
        trials=args.trials,
        timeout_s=args.timeout,
        objective=args.objective,
        study=args.study,
    )
    if args.until:
        parse_date(args.until, "--until")
    check_config_columns(cfg, against_model=False)
    require_prefect_api()
    runner = task_runner_for(tuning.workers if args.workers is None else args.workers, args.dask)
    summary = run_tune(
        args.config,
        task_runner=runner,
        trials=args.trials,
        timeout_s=args.timeout,
        objective=args.objective,
        study=args.study,
        until=args.until,
    )
    print("\n" + format_tune_summary(summary))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    tune = sub.add_parser(
        "tune",
        help="search the detector's hyperparameters (Optuna TPE, resumable)",
        description="Run the tune flow: split the training window exactly as `aeflow train` does, "
        "leave its evaluation holdout unread, and search the declared space ([tuning] in the "
        "config, see docs/tuning.md) with seeded TPE and median pruning on the validation curve. "
        "The objective is stated in every output: AUPRC on a labelled validation split of the "
        "training part when the window has labels; without labels the validation reconstruction "
        "loss, which selects good features, not good detectors; or the encoded features' "
        "cross-validated AUROC for tuning.downstream_label. The study lives under "
        "<root>/reports/<dataset>/tuning/<study>/ (SQLite locally, a journal file on object "
        "storage): running the command again resumes it, with no trial lost or repeated. Writes "
        "best-params.toml (for `aeflow train --params`), trials.csv/.md, summary.json and "
        "report.html there. Same seed, trial count and tuning.trials_per_round: same best "
        "parameters on CPU, whatever the number of workers.",
    )
    add_config_argument(tune)
    tune.add_argument(
        "--trials", type=int, help="trials the study should hold in all (tuning.trials)"
    )
    tune.add_argument(
        "--timeout", type=float, metavar="S", help="start no new round of trials after S seconds"
    )
    tune.add_argument(
        "--objective",
        choices=("auto", "auprc", "reconstruction", "downstream"),
        help="what to optimise (tuning.objective; auto picks from the labels and config)",
    )
    tune.add_argument("--study", help="study name (tuning.study); an existing study resumes")
    tune.add_argument(
        "--until", metavar="YYYY-MM-DD", help="last day of the training window (as for train)"
    )
    tune.add_argument("--workers", type=int, help="trials run at once (tuning.workers)")
    tune.add_argument(
        "--dask",
        metavar="ADDRESS|local",
        help="run trials on a Dask cluster: a scheduler address, or 'local' for a temporary "
        "LocalCluster of --workers processes (needs the dask extra); results do not change",
    )
    tune.set_defaults(handler=cmd_tune)
