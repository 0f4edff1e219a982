"""A tiny registered champion for the tests that score demo batches."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from models import AutoencoderDetector
from tasks.demo_data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS
from tasks.frames import feature_frame
from tasks.io import Storage, StorageOptions, read_table
from tasks.settings import ColumnsSettings, ScoringSettings, ValidationSettings


def demo_columns(**changes) -> ColumnsSettings:
    """The demo data's column roles (id, timestamp, features), with ``changes``."""
    from tasks.demo_data import ID_COLUMN, TIMESTAMP_COLUMN

    roles = {
        "id": ID_COLUMN,
        "timestamp": TIMESTAMP_COLUMN,
        "numeric": list(NUMERIC_COLUMNS),
        "categorical": list(CATEGORICAL_COLUMNS),
        **changes,
    }
    return ColumnsSettings(**roles)


def scoring_settings(chunk_rows: int = 65_536, top_k: int = 3) -> ScoringSettings:
    """Scoring settings for small test batches: ``chunk_rows`` may be below the config's minimum
    (1024), so a batch of a few hundred rows still streams in several chunks."""
    return ScoringSettings.model_construct(workers=1, chunk_rows=chunk_rows, top_k=top_k)


def fit_tiny_detector(table, *, seed: int = 0, epochs: int = 2) -> AutoencoderDetector:
    """A small detector (hidden 16, latent 3, CPU) fitted on the demo columns of ``table``."""
    return AutoencoderDetector(
        numeric_columns=list(NUMERIC_COLUMNS),
        categorical_columns=list(CATEGORICAL_COLUMNS),
        hidden_sizes=(16,),
        latent_dim=3,
        epochs=epochs,
        random_state=seed,
        device="cpu",
    ).fit(feature_frame(table, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS))


def register_tiny_champion(
    layout: Storage,
    batch_path: str,
    work_dir: Path,
    *,
    seed: int = 0,
    epochs: int = 2,
    options: StorageOptions = None,
    reason: str = "test",
) -> str:
    """Fit a small detector (hidden 16, latent 3) on the local demo batch at ``batch_path``,
    register it in ``layout``'s model registry (on the storage ``options`` address) and make it
    the champion; returns its version. The bundle is written to a fresh folder under ``work_dir``
    and removed once registered."""
    detector = fit_tiny_detector(read_table(batch_path), seed=seed, epochs=epochs)
    with tempfile.TemporaryDirectory(dir=work_dir) as bundle:
        detector.save(bundle)
        registry = dataclasses.replace(layout, options=options).registry()
        version = registry.register(bundle)
    registry.promote(version, reason)
    return version


def score_demo_batch(
    storage: Storage,
    batch,
    *,
    chunk_rows: int = 65_536,
    top_k: int = 3,
    columns: ColumnsSettings | None = None,
    **kwargs,
):
    """`tasks.scoring.score_batch` with the demo data's columns (id and timestamp passed through)
    and ``kwargs`` (model_version, force, runtime)."""
    from tasks.scoring import score_batch

    return score_batch(
        batch=batch,
        storage=storage,
        columns=columns or demo_columns(),
        scoring=scoring_settings(chunk_rows, top_k),
        **kwargs,
    )


def demo_validation(**changes) -> ValidationSettings:
    """Validation against the demo suite (expectations/demo.json), with ``changes``."""
    suite = Path(__file__).resolve().parents[1] / "expectations" / "demo.json"
    return ValidationSettings(suite=str(suite), **changes)


def validate_demo_batch(batch, options: StorageOptions = None):
    """`tasks.validation.validate_batch` against the demo suite, with the demo data's columns."""
    from tasks.validation import validate_batch

    return validate_batch(
        batch, columns=demo_columns(), validation=demo_validation(), options=options
    )
