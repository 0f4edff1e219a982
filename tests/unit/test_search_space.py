"""The declared search space, its config overrides and the parameters file `train --params` reads."""

from __future__ import annotations

import tomllib

import pytest

from flows.config import ConfigError, load_config, with_model_params
from models import AutoencoderDetector, search_space
from models import detector_params as detector_checks
from models.preprocessing import SCALINGS
from tasks.tuning.results import params_snippet

BASE = """dataset = "t"
[columns]
id = "id"
numeric = ["a", "b"]
[validation]
suite = "suite.json"
"""


def write_config(tmp_path, tuning: str):
    path = tmp_path / "c.toml"
    path.write_text(BASE + tuning)
    return path


def test_the_space_lists_the_detectors_own_choices():
    assert search_space.VARIANTS == detector_checks.VARIANTS
    assert search_space.SCALINGS == SCALINGS
    assert set(search_space.DEFAULT_SPACE) <= set(AutoencoderDetector().get_params())


def test_overrides_narrow_fix_and_replace_choices():
    space = search_space.build_space(
        {"latent_dim": {"low": 4, "high": 8}, "n_members": 1, "variant": {"choices": ["plain"]}}
    )
    assert (space["latent_dim"].low, space["latent_dim"].high, space["latent_dim"].log) == (
        4,
        8,
        True,
    )
    assert space["n_members"].fixed == 1 and "n_members" not in search_space.searched(space)
    assert space["variant"].choices == ("plain",)
    params = search_space.detector_params({"hidden_sizes": "128-64"}, space)
    assert params["hidden_sizes"] == [128, 64] and params["n_members"] == 1


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ("latnt_dim = 4", "tuning.space.latnt_dim"),
        ("latent_dim = { low = 8, high = 4 }", "tuning.space.latent_dim"),
        ("dropout = { low = 0.1, hi = 0.3 }", "tuning.space.dropout"),
        ("variant = { choices = ['plain', 'sparse'] }", "tuning.space.variant"),
        ("scaling = 'log'", "tuning.space.scaling"),
        ("learning_rate = { low = 0.0, high = 0.1, log = true }", "tuning.space.learning_rate"),
        ("hidden_sizes = { choices = ['64-x'] }", "tuning.space.hidden_sizes"),
        ("epochs = { low = 2.5, high = 9 }", "tuning.space.epochs"),
    ],
)
def test_bad_search_space_entries_are_config_errors_naming_the_key(tmp_path, entry, named):
    with pytest.raises(ConfigError) as error:
        load_config(write_config(tmp_path, f"[tuning.space]\n{entry}\n"))
    assert named in str(error.value) and "c.toml" in str(error.value)


def test_unknown_tuning_keys_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="tuning.trails"):
        load_config(write_config(tmp_path, "[tuning]\ntrails = 3\n"))


def test_a_parameters_file_lays_the_model_table_over_the_config(tmp_path):
    cfg = load_config(write_config(tmp_path, "[model]\nepochs = 5\ndropout = 0.1\n"))
    summary = {
        "dataset": "t",
        "study": "s",
        "config": "c.toml",
        "objective": {"name": "auprc", "direction": "maximize", "statement": "x"},
        "winner": "best trial",
        "best_value": 0.5,
        "default_value": 0.4,
        "params": {
            "hidden_sizes": [32, 16],
            "learning_rate": 0.00012,
            "variant": "plain",
            "batch_size": "auto",
        },
    }
    snippet = params_snippet(summary)
    assert "objective: auprc" in snippet
    assert tomllib.loads(snippet)["model"]["hidden_sizes"] == [32, 16]
    params = tmp_path / "best.toml"
    params.write_text(snippet)
    tuned = with_model_params(cfg, params)
    assert tuned.model["hidden_sizes"] == [32, 16] and tuned.model["epochs"] == 5
    assert tuned.detector_params()["learning_rate"] == pytest.approx(0.00012)


def test_a_parameters_file_with_an_unknown_parameter_names_it(tmp_path):
    cfg = load_config(write_config(tmp_path, ""))
    params = tmp_path / "best.toml"
    params.write_text("[model]\nlatent_width = 3\n")
    with pytest.raises(ConfigError, match="latent_width"):
        with_model_params(cfg, params)
    params.write_text("[training]\nseed = 3\n")
    with pytest.raises(ConfigError, match="one \\[model\\] table"):
        with_model_params(cfg, params)
