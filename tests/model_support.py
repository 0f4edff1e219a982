"""A tiny registered champion for the tests that score demo batches."""

from __future__ import annotations

import tempfile
from pathlib import Path

from models import AutoencoderDetector
from models.registry import ModelRegistry
from tasks.demo_data import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS
from tasks.frames import feature_frame
from tasks.io import StorageLayout, StorageOptions, read_table


def register_tiny_champion(
    layout: StorageLayout,
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
    frame = feature_frame(read_table(batch_path), NUMERIC_COLUMNS, CATEGORICAL_COLUMNS)
    detector = AutoencoderDetector(
        numeric_columns=list(NUMERIC_COLUMNS),
        categorical_columns=list(CATEGORICAL_COLUMNS),
        hidden_sizes=(16,),
        latent_dim=3,
        epochs=epochs,
        random_state=seed,
        device="cpu",
    ).fit(frame)
    with tempfile.TemporaryDirectory(dir=work_dir) as bundle:
        detector.save(bundle)
        registry = ModelRegistry(layout.models, options)
        version = registry.register(bundle)
    registry.promote(version, reason)
    return version


def score_demo_batch(layout: StorageLayout, batch, **kwargs):
    """`tasks.scoring.score_batch` with the demo data's columns (id and timestamp passed through)."""
    from tasks.demo_data import ID_COLUMN, TIMESTAMP_COLUMN
    from tasks.scoring import score_batch

    return score_batch(
        batch,
        layout,
        [ID_COLUMN, TIMESTAMP_COLUMN],
        TIMESTAMP_COLUMN,
        list(NUMERIC_COLUMNS),
        list(CATEGORICAL_COLUMNS),
        **kwargs,
    )


def validate_demo_batch(batch, options: StorageOptions = None):
    """`tasks.validate.validate_batch` against the demo suite, with the demo data's columns."""
    from pathlib import Path

    from tasks.demo_data import ID_COLUMN, TIMESTAMP_COLUMN
    from tasks.validate import validate_batch

    suite = Path(__file__).resolve().parents[1] / "expectations" / "demo.json"
    return validate_batch(
        batch,
        str(suite),
        ID_COLUMN,
        TIMESTAMP_COLUMN,
        list(NUMERIC_COLUMNS),
        list(CATEGORICAL_COLUMNS),
        [],
        options=options,
    )
