"""The parameters of :class:`models.detector.AutoencoderDetector`: what each means, their
validation (called by ``fit``), the device choice and the library versions a bundle records.

All parameters are keyword-only (scikit-learn's convention: ``__init__`` only stores them).

Columns
    numeric_columns, categorical_columns: column names; both ``None`` detects every column of the
        fit frame from its dtype. Naming either uses exactly the named columns (the other list
        defaults to empty) and ignores the rest (ids, timestamps, labels).
Preprocessing
    scaling: ``"auto"`` (a Yeo-Johnson power transform on columns whose training skewness is
        above 1, then standard scaling; see :mod:`models.preprocessing`),
        ``"standard"``, ``"robust"``, ``"quantile"`` (to a normal), ``"minmax"`` or ``"none"``.
    binary_columns: a numeric column with exactly two distinct values at fit is a flag,
        reconstructed with a cross-entropy over its two values (``False``: a numeric column).
    numeric_imputation: ``"median"`` or ``"mean"``.
    add_missing_indicators: add a 0/1 feature for each numeric column with missing values at fit.
    min_frequency, max_categories: rare-level grouping of the one-hot encoder (scikit-learn
        semantics: a count, or a share of rows when a float < 1); unseen levels map to the rare
        group, or cost as much as the least likely level when a column has none.
Network
    hidden_sizes: encoder hidden widths (decoder mirrored); latent_dim: latent width per member.
    activation: one of ``relu, leaky_relu, elu, gelu, silu, tanh``; dropout: rate in [0, 1);
    batch_norm: batch normalisation after hidden layers.
    variant: ``"plain"``, ``"denoising"`` (swap noise with rate ``swap_noise``) or
        ``"variational"`` (KL term weighted by ``kl_weight``).
    n_members: ensemble size; members differ by seed and, when ``ensemble_widths`` is given, by
        hidden width (member m multiplies ``hidden_sizes`` by ``ensemble_widths[m % len]``).
        Members' normalised reconstruction surprises are averaged.
    clip_inputs: the encoder sees each feature clipped to its training range (the errors use
        the real value); see :class:`models.network.MixedAutoencoder`.
Training
    trim_fraction: share of each batch's highest-error rows left out of the loss, in [0, 1).
    epochs, weight_decay, patience (early stopping on the validation loss, 0 = off), grad_clip
        (max gradient norm, 0 = off), validation_fraction (held-out share used for early
        stopping and calibration).
    batch_size: rows per optimisation step, or ``"auto"``: about 8 steps per epoch, a power of
        two from 256 to 4096 rows (small tables keep 256; see
        :func:`models.trainer.resolve_batch_size`).
    learning_rate: AdamW peak (warm-up, then cosine decay), or ``"auto"``: 1e-3 up to 256 rows
        per step, growing with the square root of the rows per step above that (4096 rows:
        4e-3). ``metadata_`` records both values used.
Scoring
    column_weights: optional ``{column: weight}`` (default 1 each) for the loss and the score.
    error_normalization: ``"surprise"``: each column's error in nats of excess surprise over
        its typical value on the training rows (:class:`models.column_scores.ColumnScorer`);
        ``"validation_mean"`` divides each column's error by its mean on the validation rows;
        ``"none"`` keeps the raw errors (squared errors and cross-entropies as they are).
    typical_error_floor: the smallest typical squared error (scaled units, > 0) a numeric column's
        reconstruction surprise is measured against (``"surprise"`` only): a column reconstructed
        almost exactly would otherwise make any small error a huge surprise.
    marginal_weight: weight (>= 0) of each column's marginal surprise (how far its value lies
        from the column's bulk, or how rare its level is) added to its reconstruction surprise.
Explanations
    explanation_quantile, explanation_floor: a row's columns are ranked (``top_features``,
        ``explain``'s ``top_k`` and ranks) by their contribution over what is a high contribution
        for that column: its ``explanation_quantile`` (in (0, 1]) on the fit rows, at least
        ``explanation_floor`` nats (> 0). A column whose natural values often cost many nats is
        then named only when it is unusual for it. Scores and contributions do not change.
    threshold_method, threshold_value: see :func:`models.calibration.fit_threshold`.
Encoded features
    whiten_latent: ``transform`` returns the code's principal axes, whitened, ordered by
        variance and sign-fixed (:class:`models.latent.LatentRotation`); ``False``: the raw code.
Runtime
    random_state: seed for the split, initialisation, batch order and noise.
    device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda[:i]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def validation_split(
    n_rows: int, validation_fraction: float, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """(validation row indices, training row indices) of ``n_rows`` fit rows: the seeded split
    :class:`models.AutoencoderDetector` makes with its ``validation_fraction`` and
    ``random_state`` (validation rows never take a gradient step), so a caller can find the labels
    of the rows the detector held out (:mod:`tasks.label_threshold`)."""
    order = np.random.default_rng(random_state).permutation(n_rows)
    n_validation = min(n_rows - 1, max(1, round(validation_fraction * n_rows)))
    return order[:n_validation], order[n_validation:]


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
    if not detector.typical_error_floor > 0:
        raise ValueError(f"typical_error_floor must be > 0, got {detector.typical_error_floor}")
    if not 0 < detector.explanation_quantile <= 1:
        raise ValueError(
            f"explanation_quantile must be in (0, 1], got {detector.explanation_quantile}"
        )
    if not detector.explanation_floor > 0:
        raise ValueError(f"explanation_floor must be > 0, got {detector.explanation_floor}")
    calibration.check_threshold(detector.threshold_method, detector.threshold_value)
    resolve_device(detector.device)


def column_weight_vector(
    column_weights: dict[str, float] | None, columns: Sequence[str]
) -> np.ndarray:
    """(n_columns,) float32 weight of each of ``columns``: 1, or what ``column_weights`` says."""
    weights = np.ones(len(columns), dtype=np.float32)
    for name, weight in (column_weights or {}).items():
        if name not in columns:
            raise ValueError(
                f"column_weights names column {name!r}, which the detector does not use; "
                f"use one of {list(columns)}"
            )
        if not weight >= 0:
            raise ValueError(f"column_weights[{name!r}] must be >= 0, got {weight}")
        weights[list(columns).index(name)] = weight
    return weights


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
