"""A registered bundle is checked against the registry's whole-bundle sha256 on load and by
`aeflow models list|show`; `--model-version` names registry entries only (issue 12, defect 8)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from models import AutoencoderDetector
from models.registry import RegistryError
from tasks.io import Storage


def edit_threshold(bundle: Path, threshold: float) -> None:
    """What an attacker or a careless edit does: change calibration.json and update its sha256 in
    manifest.json, so the bundle's own manifest vouches for the edit."""
    calibration = json.loads((bundle / "calibration.json").read_text())
    calibration["threshold"] = threshold
    (bundle / "calibration.json").write_text(json.dumps(calibration))
    manifest = json.loads((bundle / "manifest.json").read_text())
    digest = hashlib.sha256((bundle / "calibration.json").read_bytes()).hexdigest()
    manifest["sha256"]["calibration.json"] = digest
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def registered(tmp_path):
    root = tmp_path / "data"
    config = tmp_path / "pipeline.toml"
    config.write_text(
        'dataset = "toy"\n[storage]\nroot = "data"\n'
        '[columns]\nid = "id"\nnumeric = ["a", "b"]\n'
        '[validation]\nsuite = "toy.json"\n'
    )
    registry = Storage(str(root), "toy").registry()
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 2)), columns=["a", "b"])
    detector = AutoencoderDetector(epochs=1, random_state=0, device="cpu").fit(frame)
    detector.save(tmp_path / "bundle")
    version = registry.register(tmp_path / "bundle")
    registry.promote(version, "first")
    return {"config": str(config), "registry": registry, "version": version, "root": root}


def test_an_edited_file_with_an_updated_manifest_is_refused_on_load(registered):
    registry, version = registered["registry"], registered["version"]
    registry.load(version)  # intact: loads
    edit_threshold(Path(registry.models_root, version), 0.0)  # would flag every row
    with pytest.raises(RegistryError, match=r"calibration\.json.*modified after registration"):
        registry.load(version)
    with pytest.raises(RegistryError, match="bundle_sha256"):
        registry.load()  # the champion: the same bundle


def test_a_removed_file_is_refused_and_files_kept_beside_the_bundle_are_not_its_business(
    registered,
):
    registry, version = registered["registry"], registered["version"]
    folder = Path(registry.models_root, version)
    # the pipeline keeps a model's drift reference in its folder; nothing loads other names
    (folder / "drift_reference.json").write_text("{}")
    (folder / "notes.txt").write_text("reviewed by ops")
    registry.load(version)
    (folder / "metrics.json").unlink()
    with pytest.raises(RegistryError, match=r"metrics\.json"):
        registry.load(version)


def test_models_list_and_show_verify_the_bundles_and_say_so(registered, capsys):
    config, registry, version = (
        registered["config"],
        registered["registry"],
        registered["version"],
    )
    assert main(["models", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "every bundle matches its registry sha256" in out
    assert main(["models", "show", version, "--config", config]) == 0
    assert "bundle check      ok" in capsys.readouterr().out

    edit_threshold(Path(registry.models_root, version), 0.0)
    assert main(["models", "list", "--config", config]) == 1
    captured = capsys.readouterr()
    assert "MODIFIED" in captured.out and "calibration.json" in captured.err
    assert main(["models", "show", version, "--config", config]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["models", "show", version, "--config", config, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["bundle_check"]["ok"] is False


@pytest.mark.parametrize("name", ["../../../x", "../toy/x", "/etc", "a/b", "", ".hidden"])
def test_model_versions_must_be_registry_entries(registered, tmp_path, name):
    registry, version = registered["registry"], registered["version"]
    # a complete bundle with an entry, outside the registry, where `../../../x` would lead
    outside = Path(registry.models_root, name) if name.startswith("..") else tmp_path / "nowhere"
    if name.startswith(".."):
        outside = outside.resolve()
        outside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(registry.models_root, version), outside, dirs_exist_ok=True)
    with pytest.raises(RegistryError, match="not a model version name"):
        registry.load(name)
    with pytest.raises(RegistryError, match="not a model version name"):
        registry.resolve(name)


def test_score_refuses_a_version_path_with_one_clear_line(registered, capsys):
    code = main(["score", "--config", registered["config"], "--model-version", "../../../x"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("aeflow: error: '../../../x' is not a model version name")
    assert "Traceback" not in err
