"""models.reconstruction: rows back in their own units and levels, and decoding."""

import numpy as np
import pandas as pd
import pytest

from models import AutoencoderDetector
from models.explanations import reconstruction_of
from models.reconstruction import decode, expected_frame, reconstruct


def frame(n_rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n_rows)
    return pd.DataFrame(
        {
            "amount": np.exp(base) * 10 + 50,  # skewed
            "fee": np.where(rng.random(n_rows) < 0.1, np.nan, base * 2 + 7),
            "flag": (rng.random(n_rows) < 0.3).astype(float),  # a 0/1 column
            "channel": np.where(base > 0, "web", "store"),
            "size": rng.choice(["s", "m", "l", "xxl"], n_rows, p=[0.5, 0.3, 0.19, 0.01]),
        }
    )


COLUMNS = {"numeric_columns": ["amount", "fee", "flag"], "categorical_columns": ["channel", "size"]}


@pytest.fixture(scope="module", params=["standard", "quantile"])
def fitted(request) -> AutoencoderDetector:
    return AutoencoderDetector(
        **COLUMNS, scaling=request.param, epochs=5, min_frequency=10, device="cpu", n_members=2
    ).fit(frame())


def test_an_output_equal_to_the_input_maps_back_to_the_row(fitted):
    rows = frame(20, seed=1).dropna()
    features = fitted._features(rows)
    # As logits, a one-hot block's largest entry is the observed level.
    expected = expected_frame(fitted, reconstruction_of(fitted, [features, features]), rows.index)
    np.testing.assert_allclose(expected["amount"], rows["amount"], rtol=1e-4)
    np.testing.assert_allclose(expected["fee"], rows["fee"], rtol=1e-4)
    assert expected["flag"].tolist() == rows["flag"].tolist()
    assert expected["channel"].tolist() == rows["channel"].tolist()
    size_levels = fitted.layout_.levels[-1]  # "xxl" is rare: it is expected as its group
    assert expected["size"].tolist() == [
        v if v in size_levels else "infrequent" for v in rows["size"]
    ]


def test_decoding_the_encoded_features_gives_the_reconstruction(fitted):
    rows = frame(70, seed=2)
    reconstructed = reconstruct(fitted, rows)
    decoded = decode(fitted, fitted.transform(rows))
    assert list(reconstructed.columns) == list(fitted.feature_names_in_)
    assert reconstructed.index.equals(rows.index) and reconstructed["amount"].dtype == np.float64
    # The encoded features are float32: decoding them is the reconstruction to that rounding.
    for name in ("amount", "fee"):
        np.testing.assert_allclose(decoded[name], reconstructed[name], rtol=1e-3, atol=1e-3)
    assert (decoded["channel"].to_numpy() == reconstructed["channel"].to_numpy()).mean() > 0.95
    # One row alone gets the bits it gets among others.
    alone = reconstruct(fitted, rows.iloc[[5]])
    pd.testing.assert_frame_equal(alone, reconstructed.iloc[[5]])


def test_decode_names_the_shape_it_needs_and_refuses_nan(fitted):
    width = fitted.latent_dim_
    with pytest.raises(ValueError, match=rf"\(n_rows, {width}\)"):
        decode(fitted, np.zeros((2, width + 1)))
    codes = np.zeros((1, width))
    codes[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        decode(fitted, codes)
    assert len(decode(fitted, np.zeros((0, width)))) == 0
