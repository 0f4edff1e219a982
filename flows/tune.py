"""The `tune` flow: training window -> validate -> search rows -> rounds of trials -> results.

Wiring only: the search loop (tasks.tuning.search) asks each round's trials and tells their
results; this flow hands it a function that runs a round on the flow's task runner (threads, or
Dask with `aeflow tune --dask`). The study and its outputs live under
``<root>/reports/<dataset>/tuning/<study>/``; see docs/tuning.md.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from pydantic import ValidationError

from flows.config import load_config, storage_of
from flows.prefect_api import API_WATCH_HOOKS
from flows.preflight import check_config_columns
from flows.train import accepted_training_window
from models.search_space import searched
from tasks.run_reports import announce_tune
from tasks.tuning.objectives import OBJECTIVES
from tasks.tuning.records import TrialSpec
from tasks.tuning.search import plan_for, run_search
from tasks.tuning.settings import TuningSettings
from tasks.tuning.study_store import open_study
from tasks.tuning.tasks import prepare_search_task, run_trial_task, write_results_task

# The command line's options for the tuning settings they override.
OPTION_OF = {"timeout_s": "--timeout"}


def tuning_settings(config_tuning: TuningSettings, **overrides: Any) -> TuningSettings:
    """The config's tuning section with the command line's overrides (None = keep), validated."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return TuningSettings(**{**config_tuning.model_dump(), **given})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "tuning"
        name = OPTION_OF.get(field, f"--{field}") if field in given else f"tuning.{field}"
        if error["type"] == "value_error":  # the section's own message: the rule and the value
            message = error["msg"].removeprefix("Value error, ")
            raise ValueError(message.replace(f"tuning.{field}", name)) from None
        rule = error["msg"].removeprefix("Input ").replace("should", "must")
        raise ValueError(f"{name} {rule}, got {error['input']!r}") from None


@flow(name="aeflow-tune", log_prints=True, **API_WATCH_HOOKS)
def tune_flow(
    config: str,
    trials: int | None = None,
    timeout_s: float | None = None,
    objective: str | None = None,
    study: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Search the detector's hyperparameters on the training window (up to `until`), resuming the
    study of the same name when it exists. Arguments left None come from the config's [tuning]
    section. Returns the summary written to summary.json (objective, winner, parameters, files)."""
    logger = get_run_logger()
    cfg = load_config(config)
    tuning = tuning_settings(
        cfg.tuning, trials=trials, timeout_s=timeout_s, objective=objective, study=study
    )
    check_config_columns(cfg, against_model=False)
    storage = storage_of(cfg)
    opts = storage.options
    accepted, _ = accepted_training_window(cfg, storage, until, None)
    study_dir = storage.tuning(tuning.study)
    data = prepare_search_task(
        [b.path for b in accepted],
        config=cfg,
        tuning=tuning,
        objective=tuning.objective,
        storage=storage,
    )
    goal = OBJECTIVES[data.objective]
    logger.info("objective: %s (%s): %s", goal.name, goal.direction, goal.statement)
    plan = plan_for(tuning, cfg.detector_params(), cfg.training.seed, goal.name)
    optuna_study = open_study(study_dir, tuning.study, goal.name, goal.direction, opts)

    def run_round(specs: list[TrialSpec]):
        futures = [run_trial_task.submit(spec, data) for spec in specs]
        return [future.result() for future in futures]

    run = run_search(optuna_study, plan, run_round, logger.info)
    context = {
        "dataset": cfg.dataset,
        "config": cfg.source,
        "seed": plan.seed,
        "trials_per_round": tuning.trials_per_round,
        "space": {name: dim.describe() for name, dim in plan.space.items()},
        "this_run": run,
        "base_params": plan.base_params,
    }
    summary = write_results_task(optuna_study, data, list(plan.space), context, study_dir, opts)
    announce_tune(cfg.dataset, summary)
    logger.info(
        "searched %s; parameters: %s",
        sorted(searched(plan.space)),
        summary["files"]["best-params.toml"],
    )
    return summary


def run_tune(config: str, task_runner: Any = None, **parameters: Any) -> dict[str, Any]:
    """Run the tune flow on ``task_runner`` (the threads of ``tuning.workers`` by default)."""
    from flows.score import task_runner_for

    if task_runner is None:
        task_runner = task_runner_for(load_config(config).tuning.workers)
    return tune_flow.with_options(task_runner=task_runner)(config=config, **parameters)
