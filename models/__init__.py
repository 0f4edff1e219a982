"""aeflow's model: a mixed-type autoencoder anomaly detector (no Prefect imports here).

>>> from models import AutoencoderDetector
>>> detector = AutoencoderDetector().fit(frame)
>>> result = detector.score(batch)  # scores, percentiles, flags, latent features, top columns
"""

from models.detector import AutoencoderDetector, ScoreResult
from models.persistence import BundleError

__all__ = ["AutoencoderDetector", "BundleError", "ScoreResult"]
