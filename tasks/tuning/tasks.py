"""Prefect tasks of the tune flow: prepare the search rows, run one trial, write the results.

The plain functions live beside this module (data, objectives, search, results); these wrappers
only add Prefect settings. Trials take and return small records (paths, parameters, curves).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.io import Storage, StorageOptions
from tasks.tuning.data import prepare_search_data
from tasks.tuning.objectives import run_trial
from tasks.tuning.records import SearchData, TrialOutcome, TrialSpec
from tasks.tuning.results import write_results
from tasks.tuning.settings import TuningSettings


@task(name="prepare-search-rows", cache_policy=NO_CACHE)
def prepare_search_task(
    batch_paths: Sequence[str],
    config: Any,
    tuning: TuningSettings,
    objective: str,
    storage: Storage,
) -> SearchData:
    return prepare_search_data(
        batch_paths, config=config, tuning=tuning, objective=objective, storage=storage
    )


@task(name="tuning-trial", cache_policy=NO_CACHE, task_run_name="trial-{spec.number}")
def run_trial_task(spec: TrialSpec, data: SearchData) -> TrialOutcome:
    return run_trial(spec, data)


@task(name="write-tuning-results", cache_policy=NO_CACHE)
def write_results_task(
    study: Any,
    data: SearchData,
    searched: list[str],
    context: dict[str, Any],
    study_dir: str,
    options: StorageOptions = None,
) -> dict[str, Any]:
    return write_results(study, data, searched, context, study_dir, options)
