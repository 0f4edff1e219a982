"""`aeflow tune` through Prefect on demo data: the flow, its outputs, and `train --params`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from demo_config_support import private_demo_config

from flows.cli import build_parser
from flows.config import load_config
from flows.train import train_flow
from flows.tune import run_tune
from tasks.demo_data import generate_demo_data
from tasks.io import Storage

TUNING = """
[model]
epochs = 4
patience = 2

[evaluation]
baselines = false

[tuning]
study = "quick"
trials = 2
trials_per_round = 2
workers = 2
startup_trials = 2

[tuning.space]
epochs = 4
patience = 2
n_members = 1
batch_size = 256
hidden_sizes = { choices = ["32", "64-16"] }
variant = { choices = ["plain", "denoising"] }
"""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    config = private_demo_config(tmp_path_factory.mktemp("tune"), lambda text: text + TUNING)
    cfg = load_config(config)
    layout = Storage.from_settings(cfg.storage, cfg.dataset)
    generate_demo_data(
        layout.incoming, days=2, rows_per_day=600, seed=5, drift_day=None, malformed_day=None
    )
    summary = run_tune(str(config))
    return {"config": config, "layout": layout, "summary": summary}


def test_the_tune_flow_writes_its_results_beside_the_training_reports(tuned):
    summary, layout = tuned["summary"], tuned["layout"]
    study_dir = Path(layout.reports(), "tuning", "quick")
    assert summary["objective"]["name"] == "auprc"  # the demo window has labels
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 2
    assert (study_dir / "study.db").is_file()
    for name in ("best-params.toml", "trials.csv", "trials.md", "summary.json", "report.html"):
        assert "auprc" in (study_dir / name).read_text().lower(), name
    assert json.loads((study_dir / "summary.json").read_text())["rows"]["holdout_untouched"] > 0
    assert not list(study_dir.rglob("holdout*"))  # the split's holdout was removed unread


def test_running_it_again_resumes_the_study_without_new_trials(tuned):
    again = run_tune(str(tuned["config"]))
    assert again["this_run"]["trials_run"] == 0
    assert again["best_trial"] == tuned["summary"]["best_trial"]


def test_train_with_the_best_parameters_goes_through_the_gate(tuned):
    params_file = tuned["summary"]["files"]["best-params.toml"]
    tuned_params = tomllib.loads(Path(params_file).read_text())["model"]
    trained = train_flow(config=str(tuned["config"]), params=params_file)
    assert trained["gate"]["decision"]
    entry = tuned["layout"].registry().entry(trained["version"])
    for name, value in tuned_params.items():
        assert entry["params"][name] == value


def test_tune_help_states_the_objectives():
    parser = build_parser()
    tune = parser._subparsers._group_actions[0].choices["tune"]
    text = " ".join(tune.format_help().split())
    assert "selects good features, not good detectors" in text and "--dask" in text
