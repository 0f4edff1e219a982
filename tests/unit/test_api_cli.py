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
