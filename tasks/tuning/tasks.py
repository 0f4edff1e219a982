"""Prefect tasks of the tune flow: prepare the search rows, run one trial, write the results.

The plain functions live beside this module (data, objectives, search, results); ``task(fn)``
only adds Prefect settings. Trials take and return small records (paths, parameters, curves).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.tuning.data import prepare_search_data
from tasks.tuning.objectives import run_trial
from tasks.tuning.results import write_results

prepare_search_task = task(prepare_search_data, name="prepare-search-rows", cache_policy=NO_CACHE)
run_trial_task = task(
    run_trial, name="tuning-trial", cache_policy=NO_CACHE, task_run_name="trial-{spec.number}"
)
write_results_task = task(write_results, name="write-tuning-results", cache_policy=NO_CACHE)
