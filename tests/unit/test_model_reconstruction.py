"""models.reconstruction: rows back in their own units and levels, decoding, directions."""

import numpy as np
import pandas as pd
import pytest
import torch

from models import AutoencoderDetector
from models.reconstruction import _expected_frame, decode, directions, reconstruct


def frame(n_rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n_rows)
    return pd.DataFrame(
        {
            "amount": base * 10 + 50,
            "fee": np.where(rng.random(n_rows) < 0.1, np.nan, base * 2 + 7),
            "channel": np.where(base > 0, "web", "store"),
            "size": rng.choice(["s", "m", "l", "xxl"], n_rows, p=[0.5, 0.3, 0.19, 0.01]),
        }
    )


COLUMNS = {"numeric_columns": ["amount", "fee"], "categorical_columns": ["channel", "size"]}


@pytest.fixture(scope="module", params=["standard", "quantile"])
def fitted(request) -> AutoencoderDetector:
    return AutoencoderDetector(
        **COLUMNS, scaling=request.param, epochs=5, min_frequency=10, device="cpu", n_members=2
    ).fit(frame())


def test_an_output_equal_to_the_input_maps_back_to_the_row(fitted):
    rows = frame(20, seed=1).dropna()
    features = fitted._features(rows)
    expected = _expected_frame(fitted, [features, features], rows.index)
    np.testing.assert_allclose(expected["amount"], rows["amount"], rtol=1e-5)
    np.testing.assert_allclose(expected["fee"], rows["fee"], rtol=1e-4)
    assert expected["channel"].tolist() == rows["channel"].tolist()
    known = set(fitted.layout_.levels[1])  # "xxl" is rare: it is expected as its group
    assert expected["size"].tolist() == [v if v in known else "infrequent" for v in rows["size"]]


def test_decoding_the_encoded_features_is_the_reconstruction_bit_for_bit(fitted):
    rows = frame(70, seed=2)
    reconstructed = reconstruct(fitted, rows)
    decoded = decode(fitted, fitted.transform(rows))
    pd.testing.assert_frame_equal(decoded, reconstructed.reset_index(drop=True))
    assert list(reconstructed.columns) == list(fitted.feature_names_in_)
    assert reconstructed["amount"].dtype == np.float64 and reconstructed.index.equals(rows.index)
    # One row alone gets the bits it gets among others.
    alone = reconstruct(fitted, rows.iloc[[5]])
    pd.testing.assert_frame_equal(alone, reconstructed.iloc[[5]])


def test_directions_say_above_below_missing_and_unexpected_level(fitted):
    rows = frame(4, seed=3)
    expected = reconstruct(fitted, rows)
    rows.loc[0, "amount"] = expected.loc[0, "amount"] + 1000
    rows.loc[1, "amount"] = expected.loc[1, "amount"] - 1000
    rows.loc[2, "fee"] = np.nan
    other = "web" if expected.loc[3, "channel"] == "store" else "store"
    rows.loc[3, "channel"] = other
    found = directions(fitted, rows, expected)
    assert found.loc[0, "amount"] == "above" and found.loc[1, "amount"] == "below"
    assert found.loc[2, "fee"] == "missing"
    assert found.loc[3, "channel"] == "unexpected level"
    same = rows.copy()
    same["channel"] = expected["channel"]
    assert (directions(fitted, same, expected)["channel"] == "as expected").all()


def test_decode_names_the_shape_it_needs_and_refuses_nan(fitted):
    width = fitted.latent_dim_
    with pytest.raises(ValueError, match=rf"\(n_rows, {width}\)"):
        decode(fitted, np.zeros((2, width + 1)))
    codes = np.zeros((1, width))
    codes[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        decode(fitted, codes)
    assert len(decode(fitted, torch.zeros(0, width).numpy())) == 0
