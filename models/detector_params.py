"""Validation of :class:`models.detector.AutoencoderDetector` parameters (called by ``fit``), the
device choice and the library versions a bundle records."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from models import calibration
from models.column_scores import ERROR_NORMALIZATIONS
from models.network import ACTIVATIONS
from models.preprocessing import SCALINGS

if TYPE_CHECKING:
    from models.detector import AutoencoderDetector

VARIANTS = ("plain", "denoising", "variational")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu' or a CUDA device such as 'cuda:0', got {device!r}"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} needs CUDA, which is not available; use device='auto'")
    return resolved


def check_params(detector: AutoencoderDetector) -> None:
    """Raise ``ValueError`` naming the first parameter of ``detector`` that is not valid."""

    def positive_int(name: str, value) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")

    if detector.scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {detector.scaling!r}")
    if detector.variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {detector.variant!r}")
    if detector.activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {tuple(ACTIVATIONS)}, got {detector.activation!r}"
        )
    if detector.error_normalization not in ERROR_NORMALIZATIONS:
        raise ValueError(
            f"error_normalization must be one of {ERROR_NORMALIZATIONS}, "
            f"got {detector.error_normalization!r}"
        )
    for name in ("latent_dim", "n_members", "epochs"):
        positive_int(name, getattr(detector, name))
    if detector.batch_size != "auto" and (
        isinstance(detector.batch_size, bool)
        or not isinstance(detector.batch_size, int | np.integer)
        or detector.batch_size < 1
    ):
        raise ValueError(
            f'batch_size must be a positive integer or "auto", got {detector.batch_size!r}'
        )
    for size in detector.hidden_sizes:
        positive_int("every hidden_sizes entry", size)
    if detector.ensemble_widths is not None and (
        len(detector.ensemble_widths) == 0 or any(w <= 0 for w in detector.ensemble_widths)
    ):
        raise ValueError(
            f"ensemble_widths must be None or a non-empty list of positive multipliers, "
            f"got {detector.ensemble_widths!r}"
        )
    if not 0 <= detector.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {detector.dropout}")
    if not 0 <= detector.trim_fraction < 1:
        raise ValueError(f"trim_fraction must be in [0, 1), got {detector.trim_fraction}")
    if not 0 <= detector.swap_noise < 1:
        raise ValueError(f"swap_noise must be in [0, 1), got {detector.swap_noise}")
    if not 0 < detector.validation_fraction < 1:
        raise ValueError(
            f"validation_fraction must be in (0, 1), got {detector.validation_fraction}"
        )
    if detector.learning_rate != "auto" and not (
        isinstance(detector.learning_rate, int | float | np.number)
        and not isinstance(detector.learning_rate, bool)
        and detector.learning_rate > 0
    ):
        raise ValueError(
            f'learning_rate must be a number > 0 or "auto", got {detector.learning_rate!r}'
        )
    for name in ("weight_decay", "grad_clip", "kl_weight", "patience", "marginal_weight"):
        if not getattr(detector, name) >= 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(detector, name)}")
    calibration.check_threshold(detector.threshold_method, detector.threshold_value)
    resolve_device(detector.device)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle depends on (recorded at fit and save)."""
    import platform

    import sklearn
    import skops

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
    }
