"""The rotation that turns the network's latent codes into the encoded features ``transform`` returns.

A network's code has arbitrary axes: any rotation, scaling or sign flip of it decodes equally well,
so two trainings on the same data give codes that are not comparable column by column, and the
code's columns are correlated and of very different scales. :class:`LatentRotation` is fitted on the
codes of the training rows and maps a code to its principal axes: centred, rotated so that the
columns are uncorrelated and ordered by the variance they carry (largest first), and whitened (unit
variance on the training rows). Each axis's sign is fixed by the data: it is flipped so that the
preprocessed input feature most correlated with it correlates positively (``anchors`` records which
feature and how strongly), so a retrained model that learns the same structure gives the same
signs. Downstream models see features with the scale and order of a whitened PCA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Axes with less variance than this share of the largest are numerically empty: they are kept (the
# width stays the latent width) but not scaled up, so noise is not blown up to unit variance.
MIN_VARIANCE_SHARE = 1e-8


@dataclass(frozen=True)
class LatentRotation:
    """Centring, rotation, whitening and sign convention for (n, k) latent codes.

    Attributes:
        mean: (k,) mean code of the training rows.
        components: (k, k) matrix whose columns are the principal axes, largest variance first,
            signs already fixed.
        scales: (k,) standard deviation of the training codes along each axis (the divisor).
        explained_variance_ratio: (k,) share of the codes' total variance along each axis.
        anchors: for each axis, ``(feature index, correlation)``: the preprocessed input feature
            most correlated with the axis on the training rows (its correlation is >= 0 by the sign
            convention), or ``(-1, 0.0)`` when no input feature varies.
    """

    mean: np.ndarray
    components: np.ndarray
    scales: np.ndarray
    explained_variance_ratio: np.ndarray
    anchors: tuple[tuple[int, float], ...]

    @classmethod
    def fit(cls, codes: np.ndarray, inputs: np.ndarray) -> LatentRotation:
        """Fit on the training rows' ``codes`` (n, k) and their preprocessed ``inputs`` (n, d)."""
        codes = np.asarray(codes, dtype=np.float64)
        k = codes.shape[1]
        mean = codes.mean(axis=0) if len(codes) else np.zeros(k)
        centred = codes - mean
        covariance = centred.T @ centred / max(1, len(codes) - 1)
        variances, vectors = np.linalg.eigh(covariance)
        order = np.argsort(-variances, kind="stable")
        variances = np.maximum(variances[order], 0.0)
        vectors = vectors[:, order]
        largest = variances[0] if k and variances[0] > 0 else 1.0
        scales = np.sqrt(np.where(variances > MIN_VARIANCE_SHARE * largest, variances, largest))
        projected = centred @ vectors
        anchors = []
        for axis in range(k):
            feature, correlation = _strongest_correlation(projected[:, axis], inputs)
            if correlation < 0:
                vectors[:, axis] *= -1
                correlation = -correlation
            anchors.append((feature, correlation))
        total = variances.sum()
        ratio = variances / total if total > 0 else np.zeros(k)
        return cls(mean, vectors, scales, ratio, tuple(anchors))

    def apply(self, codes: np.ndarray) -> np.ndarray:
        """(n, k) codes -> (n, k) float32 encoded features."""
        rotated = (np.asarray(codes, dtype=np.float64) - self.mean) @ self.components
        return (rotated / self.scales).astype(np.float32)

    def invert(self, encoded: np.ndarray) -> np.ndarray:
        """(n, k) encoded features -> (n, k) float32 codes: :meth:`apply` undone (the rotation is
        orthonormal), to within the float32 rounding of the encoded features."""
        rotated = np.asarray(encoded, dtype=np.float64) * self.scales
        return (rotated @ self.components.T + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "scales": self.scales.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "anchors": [[int(f), float(c)] for f, c in self.anchors],
        }

    @classmethod
    def from_dict(cls, data: dict) -> LatentRotation:
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            components=np.asarray(data["components"], dtype=np.float64).reshape(
                len(data["mean"]), len(data["mean"])
            ),
            scales=np.asarray(data["scales"], dtype=np.float64),
            explained_variance_ratio=np.asarray(data["explained_variance_ratio"], dtype=np.float64),
            anchors=tuple((int(f), float(c)) for f, c in data["anchors"]),
        )


def _strongest_correlation(axis: np.ndarray, inputs: np.ndarray) -> tuple[int, float]:
    """Index and Pearson correlation of the column of ``inputs`` (n, d) most correlated (in
    absolute value) with ``axis`` (n,); ties go to the lowest index. ``(-1, 0.0)`` when nothing
    varies."""
    inputs = np.asarray(inputs, dtype=np.float64)
    if inputs.size == 0 or len(axis) < 2:
        return -1, 0.0
    axis = axis - axis.mean()
    centred = inputs - inputs.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0)) * np.sqrt((axis**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        correlations = np.where(norms > 0, (centred * axis[:, None]).sum(axis=0) / norms, 0.0)
    if not np.any(correlations):
        return -1, 0.0
    # Rounding keeps the choice stable against float noise between two near-equal features.
    feature = int(np.argmax(np.round(np.abs(correlations), 6)))
    return feature, float(correlations[feature])
