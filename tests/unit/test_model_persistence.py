"""Pickle-free bundles: round trip, checksums, trusted skops types."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.preprocessing import FunctionTransformer

from models import AutoencoderDetector, BundleError
from models.persistence import BUNDLE_FILES, MANIFEST_FILE, PREPROCESSOR_FILE, _sha256


def training_frame(n_rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    base = rng.normal(size=n_rows)
    frame = pd.DataFrame(
        {
            "amount": base * 3 + 10,
            "fee": base + rng.normal(scale=0.1, size=n_rows),
            "channel": np.where(base > 0.5, "web", np.where(base < -0.5, "store", "phone")),
        }
    )
    frame.loc[::9, "fee"] = np.nan
    return frame


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    detector = AutoencoderDetector(
        epochs=5, n_members=2, scaling="quantile", hidden_sizes=(16,), latent_dim=2, device="cpu"
    ).fit(training_frame())
    path = detector.save(tmp_path_factory.mktemp("bundle") / "model")
    return detector, path


def test_bundle_holds_the_agreed_files_and_no_pickle(saved):
    _, path = saved
    assert sorted(p.name for p in path.iterdir()) == sorted([*BUNDLE_FILES, MANIFEST_FILE])
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    assert set(manifest["sha256"]) == set(BUNDLE_FILES)
    params = json.loads((path / "params.json").read_text())
    assert params["n_members"] == 2 and params["hidden_sizes"] == [16]


def test_reloaded_detector_gives_identical_outputs(saved):
    detector, path = saved
    loaded = AutoencoderDetector.load(path, device="cpu")
    frame = training_frame(50).assign(channel=["fax", *["web"] * 49])
    expected, actual = detector.score(frame), loaded.score(frame)
    np.testing.assert_array_equal(actual.scores, expected.scores)
    np.testing.assert_array_equal(actual.latent, expected.latent)
    np.testing.assert_array_equal(actual.percentiles, expected.percentiles)
    assert actual.top_features == expected.top_features
    assert loaded.threshold_ == detector.threshold_
    assert loaded.get_params() == {**detector.get_params(), "device": "cpu"}
    assert loaded.history_ == detector.history_
    assert list(loaded.feature_names_in_) == list(detector.feature_names_in_)


def copy_bundle(path, tmp_path):
    target = tmp_path / "copy"
    target.mkdir()
    for file in path.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


@pytest.mark.parametrize("name", ["weights.safetensors", "calibration.json", PREPROCESSOR_FILE])
def test_tampered_file_is_refused_by_name(saved, tmp_path, name):
    _, path = saved
    bundle = copy_bundle(path, tmp_path)
    content = bytearray((bundle / name).read_bytes())
    content[len(content) // 2] ^= 0xFF
    (bundle / name).write_bytes(bytes(content))
    with pytest.raises(BundleError, match=f"{name} does not match its sha256"):
        AutoencoderDetector.load(bundle)


def test_missing_file_or_manifest_is_refused(saved, tmp_path):
    _, path = saved
    bundle = copy_bundle(path, tmp_path)
    (bundle / "schema.json").unlink()
    with pytest.raises(BundleError, match="schema.json is missing"):
        AutoencoderDetector.load(bundle)
    (bundle / MANIFEST_FILE).unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        AutoencoderDetector.load(bundle)


def replace_preprocessor(bundle: Path, preprocessor) -> None:
    """Put ``preprocessor`` in the bundle with a matching checksum: only the type checks stop it."""
    skops.io.dump(preprocessor, bundle / PREPROCESSOR_FILE)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["sha256"][PREPROCESSOR_FILE] = _sha256(bundle / PREPROCESSOR_FILE)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_untrusted_skops_type_is_refused_even_with_a_valid_checksum(saved, tmp_path):
    _, path = saved
    bundle = copy_bundle(path, tmp_path)
    # A function inside the preprocessor could run arbitrary code: load must not accept it.
    replace_preprocessor(bundle, FunctionTransformer(os.getcwd))
    with pytest.raises(BundleError, match=r"preprocessor.skops holds types that are not trusted"):
        AutoencoderDetector.load(bundle)


def test_a_trusted_object_that_is_not_a_column_transformer_is_refused(saved, tmp_path):
    _, path = saved
    bundle = copy_bundle(path, tmp_path)
    replace_preprocessor(bundle, FunctionTransformer(np.log1p))
    with pytest.raises(
        BundleError, match="must hold a fitted ColumnTransformer, got FunctionTransformer"
    ):
        AutoencoderDetector.load(bundle)


def test_a_bundle_saved_before_the_explanation_ranking_keeps_ranking_by_contribution(
    saved, tmp_path
):
    """Bundles saved before ``explanation_quantile`` existed have no ``rank_scale``: they load,
    score the same and name each row's largest contributions first, as they did."""
    detector, path = saved
    old = copy_bundle(path, tmp_path)
    calibration = json.loads((old / "calibration.json").read_text())
    del calibration["column_scorer"]["rank_scale"]
    (old / "calibration.json").write_text(json.dumps(calibration))
    params = json.loads((old / "params.json").read_text())
    del params["explanation_quantile"], params["explanation_floor"]
    (old / "params.json").write_text(json.dumps(params))
    manifest = json.loads((old / MANIFEST_FILE).read_text())
    for name in ("calibration.json", "params.json"):
        manifest["sha256"][name] = _sha256(old / name)
    (old / MANIFEST_FILE).write_text(json.dumps(manifest))

    loaded = AutoencoderDetector.load(old, device="cpu")
    assert loaded.column_scorer_.rank_scale is None
    frame = training_frame(50)
    result = loaded.score(frame, top_k=1)
    np.testing.assert_array_equal(result.scores, detector.score(frame).scores)
    names = np.asarray(loaded.feature_names_in_)
    first = names[result.contributions.argmax(axis=1)]
    positive = result.contributions.max(axis=1) > 0
    assert result.top_features == [f if p else "" for f, p in zip(first, positive, strict=True)]
