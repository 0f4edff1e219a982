"""The search loop: seeded TPE in rounds of asked trials, told in trial order; resumable.

Determinism. Trials run in parallel, so the loop never lets timing decide anything: a round of
``trials_per_round`` trials is asked together from a TPE sampler seeded by the study seed and the
round's first trial number, the trials run (in any order, on any runner), and their results are
told in trial-number order before the next round is asked. Pruning compares a trial only with the
trials finished before its round. Each trial's detector is seeded by the study seed. So the same
seed, trial count and ``trials_per_round`` give the same trials and the same best parameters on
CPU, with one worker or many, threads or Dask.

Resuming. Every asked trial stores its parameters before it runs. A killed search leaves its
round's trials RUNNING in the study; the next run evaluates exactly those trials first (same
parameters, same seed, so the same results), then asks the next round from the same seeded
sampler an uninterrupted run would have used: no trial is lost, none runs twice, and the result
matches an uninterrupted search.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from models.search_space import Dimension, build_space, detector_params, suggest
from tasks.tuning.objectives import comparability_key
from tasks.tuning.records import (
    COMPLETE,
    DEFAULTS_TRIAL,
    FAILED,
    PRUNED,
    PruningRule,
    TrialOutcome,
    TrialSpec,
)
from tasks.tuning.settings import TuningSettings

RunRound = Callable[[list[TrialSpec]], list[TrialOutcome]]
STATES = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, FAILED: TrialState.FAIL}
DEFAULTS_ATTR = "defaults"  # study user attribute: the outcome of the config's own parameters


@dataclass(frozen=True)
class SearchPlan:
    """What to run (:func:`plan_for` builds it from the tuning settings, which hold the defaults).
    ``base_params`` are the config's detector parameters (columns, threshold and
    seed included), which every trial starts from; ``space`` is the declared space with the
    config's overrides."""

    trials: int
    seed: int
    space: dict[str, Dimension]
    base_params: dict[str, Any]
    trials_per_round: int
    startup_trials: int
    timeout_s: float | None
    pruning: PruningRule


def plan_for(
    tuning: TuningSettings, base_params: dict[str, Any], training_seed: int, objective: str
) -> SearchPlan:
    """The plan of a search from the tuning settings and the config's detector parameters.

    The unsupervised objective compares reconstruction losses, which are on one scale only under
    one preprocessing: it holds ``scaling`` at the config's value.
    """
    overrides = dict(tuning.space)
    if objective == "reconstruction":
        overrides["scaling"] = base_params.get("scaling", "auto")
    seed = tuning.search_seed(training_seed)
    return SearchPlan(
        trials=tuning.trials,
        seed=seed,
        space=build_space(overrides),
        base_params={**base_params, "random_state": seed},
        trials_per_round=tuning.trials_per_round,
        startup_trials=tuning.startup_trials,
        timeout_s=tuning.timeout_s,
        pruning=PruningRule(
            tuning.pruning, tuning.pruning_warmup_epochs, tuning.pruning_startup_trials
        ),
    )


def round_seed(seed: int, first_number: int) -> int:
    """The TPE seed of the round whose first trial has ``first_number``."""
    return (seed * 1_000_003 + first_number) % (2**32)


def _trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> optuna.trial.Trial:
    # A trial asked by an earlier (killed) process: reattach to it to store its outcome.
    return optuna.trial.Trial(study, frozen._trial_id)


def _references(study: optuna.Study, rule: PruningRule) -> PruningRule:
    """``rule`` with the validation curves of the finished trials, grouped by comparability."""
    references: dict[str, list[list[float]]] = {}
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        key = comparability_key(frozen.user_attrs.get("params", {}))
        references.setdefault(key, []).append(
            frozen.user_attrs.get("outcome", {}).get("val_curve", [])
        )
    return PruningRule(rule.enabled, rule.warmup_epochs, rule.startup_trials, references)


def _ask_round(study: optuna.Study, plan: SearchPlan, count: int) -> list[tuple[int, dict, dict]]:
    first = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(
        seed=round_seed(plan.seed, first), n_startup_trials=plan.startup_trials
    )
    asked = []
    for _ in range(count):
        trial = study.ask()
        drawn = suggest(trial, plan.space)
        params = {**plan.base_params, **detector_params(drawn, plan.space)}
        trial.set_user_attr("params", params)
        trial.set_user_attr("drawn", drawn)
        asked.append((trial.number, params, drawn))
    return asked


def _record(study: optuna.Study, outcome: TrialOutcome) -> None:
    if outcome.number == DEFAULTS_TRIAL:
        study.set_user_attr(DEFAULTS_ATTR, outcome.to_dict())
        return
    frozen = study.get_trials(deepcopy=False)[outcome.number]
    _trial(study, frozen).set_user_attr("outcome", outcome.to_dict())
    values = [outcome.value] if outcome.state == COMPLETE else None
    study.tell(outcome.number, values, state=STATES[outcome.state])


def run_search(
    study: optuna.Study, plan: SearchPlan, run_round: RunRound, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run rounds until the study holds ``plan.trials`` finished trials (or the timeout passes;
    a round already started finishes). Returns counts and timings of this run."""
    started = time.monotonic()
    rounds = run_now = 0
    stopped_by = "trials"
    while True:
        trials = study.get_trials(deepcopy=False)
        orphans = [t for t in trials if t.state == TrialState.RUNNING]
        if orphans:
            log(
                f"resuming {len(orphans)} trial(s) a stopped run had started: {[t.number for t in orphans]}"
            )
            asked = [
                (t.number, t.user_attrs["params"], t.user_attrs.get("drawn", {})) for t in orphans
            ]
        else:
            if len(trials) >= plan.trials:
                break
            if plan.timeout_s is not None and time.monotonic() - started > plan.timeout_s:
                stopped_by = "timeout"
                break
            size = plan.trials_per_round
            asked = _ask_round(
                study, plan, min(size - len(trials) % size, plan.trials - len(trials))
            )
        rule = _references(study, plan.pruning)
        specs = [TrialSpec(n, p, d, plan.seed, rule) for n, p, d in asked]
        if DEFAULTS_ATTR not in study.user_attrs:
            off = PruningRule(False, 0, 0)
            specs.append(TrialSpec(DEFAULTS_TRIAL, dict(plan.base_params), {}, plan.seed, off))
        outcomes = run_round(specs)
        for outcome in sorted(outcomes, key=lambda o: o.number):
            _record(study, outcome)
        rounds += 1
        run_now += len(asked)
        finished = len(study.get_trials(deepcopy=False, states=tuple(STATES.values())))
        log(
            f"round {rounds}: trials {[n for n, _, _ in asked]} done; {finished}/{plan.trials} finished"
        )
    return {
        "rounds": rounds,
        "trials_run": run_now,
        "seconds": round(time.monotonic() - started, 3),
        "stopped_by": stopped_by,
    }
