"""`aeflow api` refuses to start, with one clear line, when it should not serve."""

import shutil
from pathlib import Path

import pytest

from flows.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path) -> Path:
    shutil.copy(REPO_ROOT / "expectations" / "demo.json", tmp_path / "demo.json")
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('root = "../data"', 'root = "data"')
    text = text.replace('suite = "../expectations/demo.json"', 'suite = "demo.json"')
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return path


def test_a_public_address_needs_a_token(config, capsys, monkeypatch):
    monkeypatch.delenv("AEFLOW_API_TOKEN", raising=False)
    assert main(["api", "--config", str(config), "--host", "0.0.0.0"]) == 2
    error = capsys.readouterr().err
    assert "AEFLOW_API_TOKEN is not set" in error and "--insecure-no-token" in error
    assert "Traceback" not in error


def test_no_champion_is_an_error_before_listening(config, capsys):
    assert main(["api", "--config", str(config), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "no champion model" in error and "aeflow train" in error


def test_bad_limits_are_named(config, capsys):
    assert main(["api", "--config", str(config), "--max-rows", "0"]) == 2
    assert "--max-rows must be at least 1, got 0" in capsys.readouterr().err


def test_query_options_take_defaults_and_name_each_bad_parameter():
    from serving.app import ApiSettings, query_options

    settings = ApiSettings(top_k=3, unseen="reject")
    assert query_options({}, settings) == (3, "reject", [])
    assert query_options({"top_k": "5", "unseen": "score"}, settings) == (5, "score", [])
    _, _, problems = query_options({"top_k": "0", "unseen": "maybe"}, settings)
    assert [p["rule"].split(":")[0] for p in problems] == ["query.top_k", "query.unseen"]
    assert "1 to 1000" in problems[0]["rule"] and "'reject' or 'score'" in problems[1]["rule"]
    _, _, problems = query_options({"top_k": "three"}, settings)
    assert problems[0]["rule"] == "query.top_k: Input should be a valid integer"
    assert all(p["fix"] and p["column"] is None for p in problems)
