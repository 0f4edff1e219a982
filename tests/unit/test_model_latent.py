"""The latent rotation behind ``transform``: whitened, ordered by variance, signs fixed by the data."""

import numpy as np

from models.latent import LatentRotation


def _codes_and_inputs(seed: int = 0, n: int = 2000):
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 3)) * np.array([3.0, 1.5, 0.5])  # three scales of variance
    mixing = rng.normal(size=(3, 3))
    codes = factors @ mixing + 5.0  # correlated, off-centre codes
    inputs = np.column_stack([factors, rng.normal(size=n)])  # each axis has an input that tracks it
    return codes, inputs


def test_encoded_features_are_whitened_uncorrelated_and_ordered_by_variance():
    codes, inputs = _codes_and_inputs()
    rotation = LatentRotation.fit(codes, inputs)
    encoded = rotation.apply(codes)
    assert encoded.dtype == np.float32 and encoded.shape == codes.shape
    encoded = encoded.astype(np.float64)
    np.testing.assert_allclose(encoded.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.cov(encoded, rowvar=False), np.eye(3), atol=1e-4)
    ratio = rotation.explained_variance_ratio
    assert np.all(np.diff(ratio) <= 0) and abs(ratio.sum() - 1) < 1e-9


def test_signs_follow_the_inputs_so_a_mirrored_code_gives_the_same_features():
    codes, inputs = _codes_and_inputs(seed=1)
    rotation = LatentRotation.fit(codes, inputs)
    encoded = rotation.apply(codes)
    # A retrain that learns the same structure with flipped and permuted code units.
    mirrored = -codes[:, [2, 0, 1]]
    again = LatentRotation.fit(mirrored, inputs).apply(mirrored)
    np.testing.assert_allclose(again, encoded, atol=1e-4)
    for axis, (feature, correlation) in enumerate(rotation.anchors):
        assert correlation > 0
        assert np.corrcoef(encoded[:, axis], inputs[:, feature])[0, 1] > 0


def test_a_collapsed_axis_is_kept_but_not_blown_up_and_the_dict_round_trips():
    codes, inputs = _codes_and_inputs(seed=2)
    codes = np.column_stack([codes, np.full(len(codes), 7.0)])  # a dead code unit
    rotation = LatentRotation.fit(codes, inputs)
    encoded = rotation.apply(codes)
    assert encoded.shape[1] == 4 and np.abs(encoded[:, 3]).max() < 1e-3
    restored = LatentRotation.from_dict(rotation.to_dict())
    np.testing.assert_array_equal(restored.apply(codes), encoded)
