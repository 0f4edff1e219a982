"""`aeflow models list|show|promote|rollback` on a real registry of small saved detectors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from models import AutoencoderDetector
from tasks.io import Storage


@pytest.fixture()
def registry_setup(tmp_path):
    config = tmp_path / "pipeline.toml"
    config.write_text(
        'dataset = "toy"\n[storage]\nroot = "data"\n'
        '[columns]\nid = "id"\nnumeric = ["a", "b"]\n'
        '[validation]\nsuite = "toy.json"\n'
    )
    registry = Storage(str(tmp_path / "data"), "toy").registry()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    versions = []
    for seed in (1, 2, 3):
        detector = AutoencoderDetector(epochs=1, random_state=seed, device="cpu").fit(frame)
        bundle = tmp_path / f"bundle-{seed}"
        detector.save(bundle)
        versions.append(registry.register(bundle, {"metrics": {"train_rows": 200}}))
    registry.promote(versions[0], "first model")
    registry.update_entry(
        versions[1],
        evaluation={"holdout_rows": 50, "reconstruction_mse": 1.25, "auroc": None},
        gate={
            "decision": "refuse",
            "applied": True,
            "reasons": ["holdout reconstruction MSE 1.2500 vs champion 0.9000 (+38.9%)"],
            "champion_before": versions[0],
            "champion_after": versions[0],
        },
    )
    registry.refuse(versions[1], "promotion gate: worse reconstruction")
    return str(config), registry, versions


def test_list_marks_the_champion_and_shows_gate_decisions(registry_setup, capsys):
    config, registry, versions = registry_setup
    assert main(["models", "list", "--config", config]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line[2:].split()[0]: line for line in lines[1:-1]}
    assert sorted(rows) == sorted(versions)
    assert rows[versions[0]].startswith("* ")
    assert "1.2500" in rows[versions[1]] and rows[versions[1]].rstrip().endswith("refuse")
    assert f"* = champion ({versions[0]})" in lines[-1]
    assert main(["models", "list", "--config", config, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["champion"] == versions[0] and len(document["versions"]) == 3


def test_show_explains_a_refused_version(registry_setup, capsys):
    config, registry, versions = registry_setup
    assert main(["models", "show", versions[1], "--config", config]) == 0
    out = capsys.readouterr().out
    assert "gate              refuse" in out
    assert "+38.9%" in out
    assert f"refuse {versions[1]} (previous {versions[0]})" in out
    assert main(["models", "show", "--config", config, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["version"] == versions[0] and document["is_champion"] is True


def test_promote_then_rollback_switch_the_champion_and_record_why(registry_setup, capsys):
    config, registry, versions = registry_setup
    argv = ["models", "promote", versions[2], "--config", config, "--reason", "reviewed report"]
    assert main(argv) == 0
    assert f"{versions[0]} -> {versions[2]}" in capsys.readouterr().out
    assert registry.champion() == versions[2]
    event = registry.champion_state()["history"][-1]
    assert event["action"] == "promote" and "reviewed report" in event["reason"]
    assert registry.entry(versions[2])["manual_promotion"]["reason"] == "reviewed report"

    assert main(["models", "rollback", "--config", config, "--reason", "alerts doubled"]) == 0
    assert f"{versions[2]} -> {versions[0]}" in capsys.readouterr().out
    assert registry.champion() == versions[0]
    assert registry.champion_state()["history"][-1]["action"] == "rollback"


def test_unknown_versions_and_impossible_rollbacks_are_clear_errors(registry_setup, capsys):
    config, registry, versions = registry_setup
    assert main(["models", "promote", "no-such-version", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "model version 'no-such-version' is not registered" in err
    assert "Traceback" not in err
    assert main(["models", "rollback", "--config", config]) == 2
    assert "no earlier champion to roll back to" in capsys.readouterr().err
    assert registry.champion() == versions[0]


def test_the_same_bundle_registered_twice_in_one_second_gets_two_versions(
    registry_setup, tmp_path, monkeypatch
):
    _, registry, versions = registry_setup
    monkeypatch.setattr("models.registry._version_stamp", lambda: "20261122T000000Z")
    bundle = tmp_path / "bundle-1"
    first = registry.register(bundle, {"note": "first"})
    second = registry.register(bundle, {"note": "second"})
    third = registry.register(bundle)
    assert second == f"{first}-2" and third == f"{first}-3"
    assert registry.entry(first)["note"] == "first"
    assert registry.entry(second)["note"] == "second"
    assert len(registry.versions()) == len(versions) + 3


def test_a_damaged_champion_file_is_named(registry_setup, capsys):
    config, registry, _ = registry_setup
    champion = registry.layout.champion_file
    with open(champion, "w") as handle:
        handle.write('{"version": 5\n')
    assert main(["models", "list", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "champion.json" in err and "Traceback" not in err
