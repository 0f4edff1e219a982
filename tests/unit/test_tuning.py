"""The search itself on small generated data: objective, holdout, resuming, determinism, pruning.

Plain functions only (no Prefect): the tune flow wires these same functions onto its task runner.
Trials are tiny (a few hundred rows, 15 epochs of 32-row steps) so the whole module stays within seconds.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tasks.io
from flows.config import PipelineConfig
from tasks.io import Storage
from tasks.training import split_training_window
from tasks.tuning import search as search_module
from tasks.tuning.data import prepare_search_data
from tasks.tuning.objectives import run_trial, should_prune
from tasks.tuning.records import PruningRule
from tasks.tuning.results import _markdown, write_results
from tasks.tuning.search import plan_for, run_search
from tasks.tuning.study_store import FsspecJournalBackend, open_study

NUMERIC = ["a", "b", "c", "d"]
SPACE = {
    "epochs": 15,
    "patience": 5,
    "n_members": 1,
    "batch_size": 32,
    "hidden_sizes": {"choices": ["16", "32-8"]},
    "latent_dim": {"low": 1, "high": 8},
    "variant": {"choices": ["plain", "denoising"]},
}


def write_batches(folder, rows_per_batch=260, batches=2, seed=3):
    """Batches with a planted anomaly direction (5% of rows, labelled) and an id per row."""
    rng = np.random.default_rng(seed)
    paths = []
    for b in range(batches):
        n = rows_per_batch
        base = rng.normal(size=(n, 2))
        frame = pd.DataFrame(
            {
                "a": base[:, 0],
                "b": base[:, 0] * 2 + 0.1 * rng.normal(size=n),
                "c": base[:, 1],
                "d": -base[:, 1],
            }
        )
        label = np.zeros(n, dtype=np.int8)
        anomalies = rng.choice(n, n // 20, replace=False)
        label[anomalies] = 1
        frame.loc[anomalies, "b"] += 2.5  # off the b = 2a line (noise 0.1), within its range
        frame.insert(0, "id", [f"r{b}-{i}" for i in range(n)])
        frame.insert(1, "ts", pd.date_range(f"2026-01-0{b + 1}", periods=n, freq="min"))
        frame["label"] = label
        path = folder / f"2026-01-0{b + 1}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        paths.append(str(path))
    return paths


def make_config(trials=6, per_round=3, **tuning):
    return PipelineConfig(
        dataset="t",
        columns={"id": "id", "timestamp": "ts", "label": "label", "numeric": NUMERIC},
        validation={"suite": "unused.json"},
        model={"epochs": 15, "patience": 5, "batch_size": 32},
        tuning={
            "trials": trials,
            "trials_per_round": per_round,
            "startup_trials": 3,
            "pruning_startup_trials": 2,
            "pruning_warmup_epochs": 2,
            "space": SPACE,
            **tuning,
        },
    )


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tuning")
    return folder, write_batches(folder)


def sequential(data):
    return lambda specs: [run_trial(spec, data) for spec in specs]


def search(folder, batches, name, cfg=None, run_round=None, objective="auto"):
    cfg = cfg or make_config()
    layout = Storage(str(folder), "tuning")
    tuning = cfg.tuning.model_copy(update={"study": name})
    study_dir = layout.tuning(name)
    data = prepare_search_data(
        batches, config=cfg, tuning=tuning, objective=objective, storage=layout
    )
    plan = plan_for(cfg.tuning, cfg.detector_params(), cfg.training.seed, data.objective)
    study = open_study(
        study_dir,
        name,
        data.objective,
        "maximize" if data.objective != "reconstruction" else "minimize",
    )
    run_search(study, plan, (run_round or sequential)(data), log=lambda _: None)
    return study, data, plan, study_dir


def history(study):
    return [(t.number, t.state.name, t.user_attrs["params"], t.value) for t in study.get_trials()]


@pytest.fixture(scope="module")
def reference(window):
    folder, batches = window
    return search(folder, batches, "reference")


def test_a_small_search_is_at_least_as_good_as_the_defaults_on_its_objective(reference):
    study, data, plan, study_dir = reference
    assert data.objective == "auprc"
    summary = write_results(
        study,
        data,
        list(plan.space),
        {"dataset": "t", "config": "c.toml", "base_params": plan.base_params},
        study_dir,
    )
    assert len(study.get_trials()) == 6
    assert summary["default_value"] is not None
    assert summary["best_value"] >= summary["default_value"]
    # every output states the objective
    for name in ("best-params.toml", "trials.csv", "trials.md", "summary.json", "report.html"):
        text = Path(summary["files"][name]).read_text()
        assert "auprc" in text.lower(), name


def test_the_search_never_reads_the_holdout(window, monkeypatch, tmp_path):
    folder, batches = window
    cfg = make_config(trials=2, per_round=2)
    opened: list[str] = []
    original = tasks.io.open_input

    def recording(path, options=None):
        opened.append(str(path))
        return original(path, options)

    monkeypatch.setattr(tasks.io, "open_input", recording)
    study, data, _, study_dir = search(tmp_path, batches, "holdout", cfg)
    monkeypatch.undo()
    layout = Storage(str(tmp_path), "tuning")
    holdout_file = layout.holdout_rows(layout.tuning_split_run("holdout"))
    assert Path(holdout_file).parent.parent == Path(study_dir)  # in the study's folder
    assert opened and holdout_file not in opened
    # The rows the search used are disjoint from the holdout the train flow (and its gate) uses.
    split = split_training_window(
        batch_paths=batches,
        columns=cfg.columns,
        evaluation=cfg.evaluation,
        seed=cfg.training.seed,
        run="train-flow",
        storage=layout,
    )
    holdout_ids = set(pq.read_table(split.holdout_path).column("id").to_pylist())
    used = set()
    for path in (data.fit_path, data.validation_path):
        used |= set(pq.read_table(path).column("id").to_pylist())
    assert len(holdout_ids) == data.holdout_rows > 0
    assert used and not used & holdout_ids


class Killed(BaseException):
    """Stands for a kill: nothing after it runs in the search process."""


@pytest.mark.parametrize("kill_at", ["while the round runs", "while its results are stored"])
def test_a_killed_search_resumes_with_no_trial_lost_or_repeated(
    window, reference, tmp_path, monkeypatch, kill_at
):
    folder, batches = window
    calls = {"rounds": 0, "records": 0}
    name = "killed"

    def dying(data):
        def run_round(specs):
            calls["rounds"] += 1
            if calls["rounds"] == 2 and kill_at == "while the round runs":
                raise Killed
            return [run_trial(spec, data) for spec in specs]

        return run_round

    if kill_at == "while its results are stored":
        original = search_module._record

        def record(study, outcome):
            calls["records"] += 1
            if calls["records"] == 6:  # round 1 told 3 trials + the defaults; die inside round 2
                raise Killed
            original(study, outcome)

        monkeypatch.setattr(search_module, "_record", record)
    with pytest.raises(Killed):
        search(tmp_path, batches, name, run_round=dying)
    monkeypatch.undo()
    study, *_ = search(tmp_path, batches, name)
    assert [n for n, *_ in history(study)] == list(range(6))
    assert all(state in ("COMPLETE", "PRUNED", "FAIL") for _, state, *_ in history(study))
    assert history(study) == history(reference[0])


def test_parallel_rounds_give_the_same_best_parameters(window, reference, tmp_path):
    folder, batches = window

    def parallel(data):
        def run_round(specs):
            with ThreadPoolExecutor(max_workers=3) as pool:
                return list(pool.map(lambda spec: run_trial(spec, data), specs))

        return run_round

    study, *_ = search(tmp_path, batches, "parallel", run_round=parallel)
    assert history(study) == history(reference[0])
    assert study.best_params == reference[0].best_params


def test_median_pruning_compares_best_so_far_with_comparable_finished_trials():
    rule = PruningRule(True, 2, 2, {"k": [[3.0, 2.0, 1.0], [4.0, 3.0, 2.5, 2.0]]})
    assert not should_prune(rule, "k", [5.0, 5.0])  # warm-up
    assert should_prune(rule, "k", [5.0, 5.0, 5.0])  # median best at epoch 3: 1.75
    assert not should_prune(rule, "k", [5.0, 5.0, 1.5])
    assert not should_prune(rule, "other", [9.0, 9.0, 9.0])  # nothing comparable yet
    assert not should_prune(PruningRule(False, 0, 1, rule.references), "k", [9.0, 9.0, 9.0])


def test_a_study_on_object_storage_is_a_journal_that_reopens(tmp_path):
    url = "memory://aeflow-tuning-test/reports/t/tuning/s"
    study = open_study(url, "s", "auprc", "maximize")
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    study.tell(trial, 0.5)
    reopened = open_study(url, "s", "auprc", "maximize")
    assert [t.value for t in reopened.get_trials()] == [0.5]
    lines = FsspecJournalBackend(url + "/journal.log").read_logs(0)
    assert lines and all(isinstance(line, dict) for line in lines)
    with pytest.raises(ValueError, match="objective 'auprc'"):
        open_study(url, "s", "reconstruction", "minimize")


def test_without_labels_the_objective_is_reconstruction_with_the_scaling_held(window, tmp_path):
    folder, batches = window
    cfg = PipelineConfig(
        dataset="t",
        columns={"id": "id", "timestamp": "ts", "numeric": NUMERIC},
        validation={"suite": "unused.json"},
        model={"epochs": 4, "patience": 2, "batch_size": 64, "scaling": "robust"},
        tuning={"trials": 2, "trials_per_round": 2, "pruning": False, "space": SPACE},
    )
    study, data, plan, study_dir = search(tmp_path, batches, "unlabelled", cfg)
    assert data.objective == "reconstruction" and data.label is None
    assert plan.space["scaling"].fixed == "robust"
    summary = write_results(study, data, list(plan.space), {"dataset": "t", "config": "c.toml", "base_params": plan.base_params}, study_dir)  # fmt: skip
    assert summary["objective"]["direction"] == "minimize"
    assert (
        "selects features (a faithful, compact code), not detectors"
        in summary["objective"]["limits"]
    )
    assert 0 < summary["best_value"] < float("inf")


def test_a_downstream_label_selects_the_downstream_objective(window, tmp_path):
    folder, batches = window
    cfg = make_config(trials=2, per_round=2, downstream_label="label", pruning=False)
    study, data, *_ = search(tmp_path, batches, "downstream", cfg)
    assert data.objective == "downstream" and data.downstream == "label"
    assert all(0 <= t.value <= 1 for t in study.get_trials())
    with pytest.raises(ValueError, match="tuning.downstream_label"):
        search(tmp_path, batches, "bad", make_config(trials=1), objective="downstream")


def test_trials_markdown_escapes_notes_and_names_so_the_table_holds():
    """A failed trial's note is an error message and the study a user's name: a ``|`` must not add
    a cell, a ``[x](url)`` must not become a link."""
    rows = [
        {"number": 0, "state": "complete", "value": 0.5, "note": ""},
        {"number": 1, "state": "fail", "value": None, "note": "column 'a|b' [x](http://e.x)"},
    ]
    objective = {"name": "auprc", "direction": "maximize", "statement": "s", "limits": "none"}
    text = _markdown(
        rows, {"study": "night|ly [x](http://e.x)", "dataset": "d", "objective": objective}
    )
    table = [line for line in text.splitlines() if line.startswith("|")]
    unescaped_pipes = [len(re.findall(r"(?<!\\)\|", line)) for line in table]
    assert len(set(unescaped_pipes)) == 1 and unescaped_pipes[0] == 5
    assert "](http" not in text.replace("\\]", "")
    assert "a\\|b" in text and "night\\|ly" in text


def test_a_bad_command_line_override_names_its_option():
    # `aeflow tune --trials 0` printed pydantic's three-line "1 validation error for
    # TuningSettings" with a link, naming the field rather than the option.
    from flows.tune import tuning_settings
    from tasks.tuning.settings import TuningSettings

    with pytest.raises(ValueError, match=r"^--trials must be .*1.*got 0$"):
        tuning_settings(TuningSettings(), trials=0)
    with pytest.raises(ValueError, match=r"^--timeout must be .*got -5"):
        tuning_settings(TuningSettings(), timeout_s=-5.0)
