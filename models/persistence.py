"""Pickle-free save and load of a fitted :class:`models.detector.AutoencoderDetector`.

A bundle is one local directory:

==========================  ===============================================================
``weights.safetensors``     network weights, tensors named ``member{m}.{parameter}``
``preprocessor.skops``      the fitted ColumnTransformer (skops; loaded with trusted types only)
``params.json``             constructor parameters (``get_params()``)
``schema.json``             input columns (numeric, categorical) and the preprocessed layout
``calibration.json``        threshold, reference scores for percentiles, the column scorer (typical
                            errors, marginal statistics) and the latent rotation
``versions.json``           bundle format and library versions at save time
``metrics.json``            training history and fit metadata
``manifest.json``           sha256 of every file above
==========================  ===============================================================

:func:`read_bundle` checks every checksum and refuses skops types outside
:data:`TRUSTED_SKOPS_TYPES` before it deserialises anything, with an error naming the file; it
returns the bundle's contents (:class:`SavedState`), from which
:meth:`models.detector.AutoencoderDetector.from_saved_state` rebuilds the fitted detector (so this
module never imports the detector: it only reads and writes files).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import skops.io
from safetensors.torch import load_file, save_file
from sklearn.compose import ColumnTransformer

from models.column_scores import ColumnScorer
from models.detector_params import library_versions
from models.latent import LatentRotation
from models.preprocessing import FeatureLayout

if TYPE_CHECKING:
    from models.detector import AutoencoderDetector

# 2: per-column scoring (column scorer), encoded-feature rotation, flag columns and skew-transform
# preprocessing, encoder input bounds (issue 14). A format-1 bundle scores with raw errors and
# unrotated codes, which this version no longer computes: it is refused with the fix named.
BUNDLE_FORMAT = 2
WEIGHTS_FILE = "weights.safetensors"
PREPROCESSOR_FILE = "preprocessor.skops"
PARAMS_FILE = "params.json"
SCHEMA_FILE = "schema.json"
CALIBRATION_FILE = "calibration.json"
VERSIONS_FILE = "versions.json"
METRICS_FILE = "metrics.json"
MANIFEST_FILE = "manifest.json"
BUNDLE_FILES = (
    WEIGHTS_FILE,
    PREPROCESSOR_FILE,
    PARAMS_FILE,
    SCHEMA_FILE,
    CALIBRATION_FILE,
    VERSIONS_FILE,
    METRICS_FILE,
)
# Types skops does not trust by default but the preprocessor legitimately holds. Anything else in
# preprocessor.skops (a function, an arbitrary class) makes load refuse the bundle.
TRUSTED_SKOPS_TYPES = frozenset({"numpy.dtype"})
# Parameters stored as JSON lists that the constructor takes as tuples.
_TUPLE_PARAMS = ("hidden_sizes", "ensemble_widths", "numeric_columns", "categorical_columns")


class BundleError(ValueError):
    """A model bundle is incomplete, was modified, or holds types that are not trusted."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _json_params(detector: AutoencoderDetector) -> dict:
    params = detector.get_params(deep=False)
    return {
        key: list(value) if isinstance(value, tuple | list) else value
        for key, value in params.items()
    }


def save_detector(detector: AutoencoderDetector, dir_path: str | Path) -> Path:
    """Write ``detector``'s bundle into ``dir_path`` (created if needed; files are overwritten).

    Returns the bundle directory.
    """
    path = Path(dir_path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"member{member}.{name}": tensor.detach().cpu().contiguous()
        for member, network in enumerate(detector.networks_)
        for name, tensor in network.state_dict().items()
    }
    save_file(tensors, str(path / WEIGHTS_FILE), metadata={"format": str(BUNDLE_FORMAT)})
    skops.io.dump(detector.preprocessor_, path / PREPROCESSOR_FILE)
    _write_json(path / PARAMS_FILE, _json_params(detector))
    _write_json(
        path / SCHEMA_FILE,
        {
            "feature_names_in": [str(c) for c in detector.feature_names_in_],
            "numeric_columns": list(detector.numeric_columns_),
            "categorical_columns": list(detector.categorical_columns_),
            "latent_dim": int(detector.latent_dim_),
            "layout": detector.layout_.to_dict(),
        },
    )
    _write_json(
        path / CALIBRATION_FILE,
        {
            "threshold": float(detector.threshold_),
            "threshold_method": detector.threshold_method,
            "threshold_value": detector.threshold_value,
            "reference_scores": [float(v) for v in detector.reference_scores_],
            "column_weights": [float(v) for v in detector.column_weights_],
            "column_scorer": detector.column_scorer_.to_dict(),
            "latent_rotation": (
                detector.latent_rotation_.to_dict()
                if detector.latent_rotation_ is not None
                else None
            ),
        },
    )
    _write_json(
        path / VERSIONS_FILE,
        {"bundle_format": BUNDLE_FORMAT, "saved_with": library_versions()},
    )
    _write_json(path / METRICS_FILE, {"history": detector.history_, "metadata": detector.metadata_})
    _write_json(
        path / MANIFEST_FILE,
        {
            "bundle_format": BUNDLE_FORMAT,
            "sha256": {name: _sha256(path / name) for name in BUNDLE_FILES},
        },
    )
    return path


def verify_bundle(dir_path: str | Path) -> dict:
    """Check that every bundle file exists and matches its manifest checksum; return the manifest.

    Raises :class:`BundleError` naming the first file that is missing or does not match.
    """
    path = Path(dir_path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(
            f"{manifest_path} is missing: a bundle needs its manifest of checksums; "
            "save the model again with AutoencoderDetector.save"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        checksums = manifest["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise BundleError(f"{manifest_path} is not a valid manifest ({error})") from None
    if manifest.get("bundle_format") != BUNDLE_FORMAT:
        older = isinstance(manifest.get("bundle_format"), int) and manifest["bundle_format"] < 2
        raise BundleError(
            f"{manifest_path} has bundle_format {manifest.get('bundle_format')!r}, this version "
            f"reads {BUNDLE_FORMAT}; "
            + (
                "the bundle was saved before per-column scoring and rotated encoded features: "
                "retrain it with this version (`aeflow train`, or AutoencoderDetector().fit) and "
                "promote the new version, or load it with the aeflow version that saved it"
                if older
                else "load it with the aeflow version that saved it"
            )
        )
    for name in BUNDLE_FILES:
        file_path = path / name
        if name not in checksums:
            raise BundleError(
                f"{manifest_path} lists no checksum for {name}; the bundle is incomplete"
            )
        if not file_path.is_file():
            raise BundleError(f"{file_path} is missing from the bundle")
        if _sha256(file_path) != checksums[name]:
            raise BundleError(
                f"{file_path} does not match its sha256 in {MANIFEST_FILE}: the file was modified "
                "or corrupted after saving; restore it or save the model again"
            )
    return manifest


@dataclass(frozen=True)
class SavedState:
    """A verified bundle's contents: the constructor parameters, the fitted preprocessor, the
    schema, the calibration, the training metrics and the weights (tensors named
    ``member{m}.{parameter}``)."""

    params: dict[str, Any]
    preprocessor: ColumnTransformer
    schema: dict[str, Any]
    calibration: dict[str, Any]
    metrics: dict[str, Any]
    tensors: dict[str, Any]

    def fitted_attributes(self) -> dict[str, Any]:
        """The detector's learned attributes (names ending in ``_``) but its networks."""
        schema, calibration = self.schema, self.calibration
        names = np.asarray(schema["feature_names_in"], dtype=object)
        rotation = calibration.get("latent_rotation")
        return {
            "preprocessor_": self.preprocessor,
            "numeric_columns_": list(schema["numeric_columns"]),
            "categorical_columns_": list(schema["categorical_columns"]),
            "feature_names_in_": names,
            "n_features_in_": len(names),
            "latent_dim_": int(schema["latent_dim"]),
            "layout_": FeatureLayout.from_dict(schema["layout"]),
            "threshold_": float(calibration["threshold"]),
            "reference_scores_": np.asarray(calibration["reference_scores"], dtype=np.float64),
            "column_weights_": np.asarray(calibration["column_weights"], dtype=np.float32),
            "column_scorer_": ColumnScorer.from_dict(calibration["column_scorer"]),
            "latent_rotation_": LatentRotation.from_dict(rotation) if rotation else None,
            "history_": self.metrics["history"],
            "metadata_": self.metrics["metadata"],
        }

    def member_weights(self, member: int) -> dict[str, Any]:
        """The state dict of ensemble member ``member``'s network."""
        prefix = f"member{member}."
        return {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def read_bundle(dir_path: str | Path) -> SavedState:
    """Verify and read a bundle written by :func:`save_detector`.

    Raises :class:`BundleError` when a checksum does not match or the preprocessor holds a type
    outside :data:`TRUSTED_SKOPS_TYPES`.
    """
    path = Path(dir_path)
    verify_bundle(path)
    preprocessor_path = path / PREPROCESSOR_FILE
    found_types = skops.io.get_untrusted_types(file=preprocessor_path)
    untrusted = sorted(set(found_types) - TRUSTED_SKOPS_TYPES)
    if untrusted:
        raise BundleError(
            f"{preprocessor_path} holds types that are not trusted: {untrusted}; only "
            f"scikit-learn preprocessing types and {sorted(TRUSTED_SKOPS_TYPES)} are allowed"
        )
    preprocessor = skops.io.load(preprocessor_path, trusted=list(found_types))
    if not isinstance(preprocessor, ColumnTransformer):
        raise BundleError(
            f"{preprocessor_path} must hold a fitted ColumnTransformer, got "
            f"{type(preprocessor).__name__}; save the model again with AutoencoderDetector.save"
        )
    params = json.loads((path / PARAMS_FILE).read_text())
    for key in _TUPLE_PARAMS:
        if params.get(key) is not None:
            params[key] = tuple(params[key])
    return SavedState(
        params=params,
        preprocessor=preprocessor,
        schema=json.loads((path / SCHEMA_FILE).read_text()),
        calibration=json.loads((path / CALIBRATION_FILE).read_text()),
        metrics=json.loads((path / METRICS_FILE).read_text()),
        tensors=load_file(str(path / WEIGHTS_FILE)),
    )
