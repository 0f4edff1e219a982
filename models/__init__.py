"""aeflow's model: a mixed-type autoencoder anomaly detector (no Prefect imports here).

>>> from models import AutoencoderDetector
>>> detector = AutoencoderDetector().fit(frame)
>>> result = detector.score(batch)  # scores, percentiles, flags, latent features, top columns

The names are imported on first use, so `models.storage` and `models.registry` (used by every CLI
command) do not pay for importing torch. Importing the package sets OpenMP's passive wait policy
(models.cpu.configure_openmp) before anything here loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from models.cpu import configure_openmp

configure_openmp()

if TYPE_CHECKING:
    from models.detector import AutoencoderDetector, ScoreResult
    from models.persistence import BundleError

_LAZY = {
    "AutoencoderDetector": "models.detector",
    "ScoreResult": "models.detector",
    "BundleError": "models.persistence",
}

__all__ = ["AutoencoderDetector", "BundleError", "ScoreResult"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
