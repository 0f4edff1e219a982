"""AutoencoderDetector: the estimator contract, input handling, scoring outputs and a quality floor."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from models import AutoencoderDetector, ScoreResult
from models.network import ColumnErrors
from models.preprocessing import normalise_frame

FAST = {"epochs": 15, "batch_size": 64, "device": "cpu"}


def mixed_frame(n_rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two correlated numeric columns, an int column, a categorical column tied to ``amount``,
    plus id/label columns the detector must ignore when columns are named."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n_rows)
    return pd.DataFrame(
        {
            "id": np.arange(n_rows),
            "amount": base * 10 + 50,
            "fee": base * 2 + rng.normal(scale=0.1, size=n_rows),
            "count": rng.integers(0, 5, n_rows),
            "channel": np.where(base > 0, "web", "store"),
            "label": 0,
        }
    )


NAMED = {"numeric_columns": ["amount", "fee", "count"], "categorical_columns": ["channel"]}


@pytest.fixture(scope="module")
def fitted() -> AutoencoderDetector:
    return AutoencoderDetector(**NAMED, **FAST).fit(mixed_frame())


def test_get_params_and_clone_round_trip_every_parameter():
    detector = AutoencoderDetector(hidden_sizes=(32, 16), latent_dim=3, threshold_value=0.05)
    params = detector.get_params()
    assert params["hidden_sizes"] == (32, 16) and params["latent_dim"] == 3
    copy = clone(detector)
    assert copy is not detector and copy.get_params() == params
    assert not hasattr(copy, "threshold_")


def test_methods_before_fit_raise_not_fitted():
    detector = AutoencoderDetector()
    frame = mixed_frame(5)
    for method in (detector.decision_function, detector.predict, detector.transform):
        with pytest.raises(NotFittedError):
            method(frame)
    with pytest.raises(NotFittedError):
        detector.save("unused")


def test_invalid_parameter_is_reported_with_its_value_at_fit():
    with pytest.raises(ValueError, match=r"threshold_value .* must be in \(0, 0.5\], got 0.7"):
        AutoencoderDetector(threshold_method="contamination", threshold_value=0.7).fit(
            mixed_frame(20)
        )
    with pytest.raises(ValueError, match="scaling must be one of .* got 'log'"):
        AutoencoderDetector(scaling="log").fit(mixed_frame(20))
    with pytest.raises(ValueError, match='batch_size must be a positive integer or "auto", got 0'):
        AutoencoderDetector(batch_size=0).fit(mixed_frame(20))
    with pytest.raises(ValueError, match="learning_rate must be a number > 0 or \"auto\", got 'x'"):
        AutoencoderDetector(learning_rate="x").fit(mixed_frame(20))


def test_auto_batch_size_and_learning_rate_follow_the_training_rows():
    detector = AutoencoderDetector(epochs=1, device="cpu", random_state=0).fit(mixed_frame(400))
    # 400 rows, 10% held out: 360 training rows, below the 256-row floor's two steps.
    assert detector.metadata_["batch_size"] == 256
    assert detector.metadata_["learning_rate"] == pytest.approx(1e-3)
    explicit = AutoencoderDetector(epochs=1, batch_size=64, learning_rate=0.01, device="cpu")
    explicit.fit(mixed_frame(400))
    assert (explicit.metadata_["batch_size"], explicit.metadata_["learning_rate"]) == (64, 0.01)


def test_named_columns_ignore_extra_columns_and_missing_ones_are_named(fitted):
    assert list(fitted.feature_names_in_) == ["amount", "fee", "count", "channel"]
    frame = mixed_frame(10, seed=1)
    shuffled = frame[["label", "channel", "count", "fee", "amount", "id"]]
    np.testing.assert_array_equal(
        fitted.decision_function(frame), fitted.decision_function(shuffled)
    )
    with pytest.raises(ValueError, match=r"missing 2 column\(s\).*\['fee', 'channel'\]"):
        fitted.decision_function(frame.drop(columns=["fee", "channel"]))


def test_detected_columns_use_every_column_and_reject_datetimes():
    frame = mixed_frame(60).drop(columns=["id", "label"])
    detector = AutoencoderDetector(epochs=2, device="cpu").fit(frame)
    assert detector.numeric_columns_ == ["amount", "fee", "count"]
    assert detector.categorical_columns_ == ["channel"]
    frame["when"] = pd.Timestamp("2024-01-01")
    with pytest.raises(TypeError, match=r"when \(datetime64"):
        AutoencoderDetector(epochs=2).fit(frame)


def test_duplicate_column_names_are_an_error_naming_them(fitted):
    frame = mixed_frame(60).drop(columns=["id", "label"])
    doubled = pd.concat([frame, frame[["fee"]]], axis=1)
    with pytest.raises(ValueError, match=r"duplicate column names \['fee'\]"):
        AutoencoderDetector(epochs=2).fit(doubled)
    with pytest.raises(ValueError, match=r"duplicate column names \['fee'\]"):
        fitted.decision_function(pd.concat([mixed_frame(5), mixed_frame(5)[["fee"]]], axis=1))


def test_numeric_column_with_text_is_an_error_naming_it(fitted):
    frame = mixed_frame(5).astype({"fee": object})
    frame.loc[2, "fee"] = "n/a"
    with pytest.raises(ValueError, match="numeric column 'fee' must hold numbers"):
        fitted.decision_function(frame)


def test_score_agrees_with_the_individual_methods(fitted):
    frame = mixed_frame(50, seed=2)
    result = fitted.score(frame, top_k=2)
    assert isinstance(result, ScoreResult)
    scores = fitted.decision_function(frame)
    np.testing.assert_allclose(result.scores, scores)
    assert result.scores.dtype == np.float64 and result.percentiles.dtype == np.float64
    assert ((result.percentiles >= 0) & (result.percentiles <= 1)).all()
    np.testing.assert_array_equal(result.is_anomaly, fitted.predict(frame) == 1)
    np.testing.assert_array_equal(result.latent, fitted.transform(frame))
    assert result.latent.shape == (50, fitted.latent_dim_) and result.latent.dtype == np.float32
    np.testing.assert_allclose(result.contributions.sum(axis=1), scores, rtol=1e-5)
    # Columns are named in the order of their contribution over what is high for each column.
    ranking = fitted.column_scorer_.ranking_key(result.contributions)
    best = np.argsort(-ranking, axis=1, kind="stable")[:, :2]
    names = np.asarray(fitted.feature_names_in_)
    # A column that adds nothing to the score explains nothing: it is not named.
    named = [
        ",".join(names[[c for c in row if result.contributions[i, c] > 0]])
        for i, row in enumerate(best)
    ]
    assert result.top_features == named
    np.testing.assert_allclose(fitted.percentile(scores), result.percentiles)


def test_explain_sums_to_the_score_and_top_k_keeps_the_first_ranked(fitted):
    frame = mixed_frame(30, seed=3).set_index("id")
    full = fitted.explain(frame, top_k=None)
    assert list(full.columns) == list(fitted.feature_names_in_)
    assert full.index.equals(frame.index)
    np.testing.assert_allclose(full.sum(axis=1), fitted.decision_function(frame), rtol=1e-5)
    top1 = fitted.explain(frame, top_k=1)
    assert ((top1 > 0).sum(axis=1) == 1).all()
    first = fitted.column_scorer_.ranking_key(full.to_numpy()).argmax(axis=1)
    np.testing.assert_array_equal(top1.to_numpy().argmax(axis=1), first)
    np.testing.assert_allclose(top1.max(axis=1), full.to_numpy()[np.arange(len(full)), first])


def test_planted_outliers_rank_high():
    train = mixed_frame(600, seed=4)
    test = mixed_frame(200, seed=5)
    outliers = test.index[:20]
    # Break the relations the model learned: fee no longer follows amount, channel flipped.
    test.loc[outliers, "fee"] = -test.loc[outliers, "fee"] + 100
    test.loc[outliers, "channel"] = np.where(test.loc[outliers, "channel"] == "web", "store", "web")
    detector = AutoencoderDetector(**NAMED, epochs=40, device="cpu").fit(train)
    labels = np.isin(test.index, outliers)
    assert roc_auc_score(labels, detector.decision_function(test)) > 0.95
    assert detector.predict(test)[labels].mean() > 0.8


def test_same_seed_gives_identical_scores_and_fit_keeps_global_rng():
    frame = mixed_frame(200)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = AutoencoderDetector(**NAMED, **FAST, random_state=7).fit(frame)
    assert torch.rand(1) == expected_next
    second = AutoencoderDetector(**NAMED, **FAST, random_state=7).fit(frame)
    other = AutoencoderDetector(**NAMED, **FAST, random_state=8).fit(frame)
    np.testing.assert_array_equal(first.decision_function(frame), second.decision_function(frame))
    assert first.threshold_ == second.threshold_
    assert not np.array_equal(first.decision_function(frame), other.decision_function(frame))


@pytest.mark.parametrize("min_frequency", [5, None])
def test_unseen_and_missing_categories_are_scored_as_surprising(min_frequency):
    train = mixed_frame(300)
    train.loc[:2, "channel"] = "phone"  # 3 rows: grouped into the infrequent level when min is 5
    detector = AutoencoderDetector(**NAMED, **FAST, min_frequency=min_frequency).fit(train)
    assert ("infrequent" in detector.layout_.levels[0]) == (min_frequency == 5)
    rows = mixed_frame(3, seed=9)
    rows["channel"] = ["fax", None, np.nan]
    assert np.isfinite(detector.decision_function(rows)).all()
    surprise = detector.explain(rows, top_k=None)["channel"]
    usual = detector.explain(train.iloc[3:100], top_k=None)["channel"]
    assert (surprise > usual.quantile(0.9)).all()


def test_all_nan_column_and_missing_values_are_handled():
    frame = mixed_frame(200)
    frame["empty"] = np.nan
    frame.loc[::7, "amount"] = np.nan
    columns = {"numeric_columns": ["amount", "fee", "empty"], "categorical_columns": ["channel"]}
    detector = AutoencoderDetector(**columns, **FAST).fit(frame)
    scores = detector.decision_function(frame)
    assert np.isfinite(scores).all()
    # amount had missing values at fit, so it gets an indicator; the indicator counts toward amount.
    assert detector.layout_.regression_column.count(0) == 2
    filled = frame.assign(empty=1.0)
    assert np.isfinite(detector.decision_function(filled)).all()


def test_single_row_and_empty_frame():
    detector = AutoencoderDetector(**NAMED, **FAST).fit(mixed_frame(100))
    one = mixed_frame(1, seed=11)
    result = detector.score(one)
    assert result.scores.shape == (1,) and result.latent.shape == (1, detector.latent_dim_)
    named = result.top_features[0].split(",") if result.top_features[0] else []
    assert len(named) == min(3, int((result.contributions[0] > 0).sum()))
    empty = detector.score(one.iloc[:0])
    assert empty.scores.shape == (0,) and empty.top_features == []


def test_numpy_input_gets_positional_column_names():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    X[:, 1] = X[:, 0] * 2
    detector = AutoencoderDetector(**FAST).fit(X)
    assert list(detector.feature_names_in_) == ["x0", "x1", "x2", "x3"]
    assert detector.decision_function(X[:3]).shape == (3,)
    frame_scores = detector.decision_function(pd.DataFrame(X[:3], columns=["x0", "x1", "x2", "x3"]))
    np.testing.assert_array_equal(detector.decision_function(X[:3]), frame_scores)
    with pytest.raises(ValueError, match="must be 2-D"):
        detector.decision_function(X[0])


def test_history_metadata_and_progress_callback():
    calls = []
    detector = AutoencoderDetector(**NAMED, epochs=4, patience=0, device="cpu").fit(
        mixed_frame(100), progress=lambda *args: calls.append(args)
    )
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(detector.history_["train_loss"]) == len(detector.history_["val_loss"]) == 4
    assert detector.metadata_["n_rows"] == 100
    assert detector.metadata_["n_validation_rows"] == 10
    assert "torch" in detector.metadata_["versions"]


def test_ensemble_concatenates_latents_and_threshold_rules():
    frame = mixed_frame(200)
    detector = AutoencoderDetector(
        **NAMED, **FAST, n_members=2, ensemble_widths=(1.0, 0.5), latent_dim=3
    ).fit(frame)
    assert detector.latent_dim_ == 6 and detector.transform(frame).shape == (200, 6)
    assert detector.networks_[1].encoder[0].out_features == 32
    fixed = AutoencoderDetector(**NAMED, **FAST, threshold_method="fixed", threshold_value=1e9)
    assert fixed.fit(frame).predict(frame).sum() == 0
    flagged = AutoencoderDetector(
        **NAMED, **FAST, threshold_method="contamination", threshold_value=0.1
    ).fit(frame)
    assert 0.05 <= flagged.predict(frame).mean() <= 0.15


def nslkdd_folder() -> Path:
    configured = os.environ.get("AEFLOW_DATASETS")
    root = (
        Path(configured)
        if configured
        else Path(__file__).resolve().parents[3] / "shared" / "datasets"
    )
    return root / "nslkdd"


@pytest.mark.skipif(not nslkdd_folder().is_dir(), reason="shared datasets folder is absent")
def test_real_mixed_type_data_with_unseen_levels():
    """NSL-KDD: 3 categorical columns (the test file has a service level unseen in training)."""

    def read(name: str, n_rows: int) -> tuple[pd.DataFrame, np.ndarray]:
        frame = pd.read_csv(nslkdd_folder() / name, header=None, nrows=n_rows)
        frame.columns = [f"f{i}" for i in range(frame.shape[1])]
        labels = (frame.pop("f41") != "normal").to_numpy()
        return frame.drop(columns=["f42"]), labels  # f42 (difficulty) leaks the label

    train, train_labels = read("KDDTrain+_20Percent.txt", 5000)
    test, test_labels = read("KDDTest+.txt", 3000)
    detector = AutoencoderDetector(epochs=30, device="cpu").fit(train[~train_labels])
    assert detector.categorical_columns_ == ["f1", "f2", "f3"]
    assert roc_auc_score(test_labels, detector.decision_function(test)) > 0.9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_with_bf16_scores_like_cpu(tmp_path):
    frame = mixed_frame(400)
    on_gpu = AutoencoderDetector(**NAMED, epochs=20, device="cuda").fit(frame)
    assert on_gpu.metadata_["device"].startswith("cuda")
    gpu_scores = on_gpu.decision_function(frame)
    on_cpu = AutoencoderDetector.load(on_gpu.save(tmp_path / "bundle"), device="cpu")
    np.testing.assert_allclose(on_cpu.decision_function(frame), gpu_scores, rtol=1e-3, atol=1e-4)


def test_score_matches_the_reference_computation_across_chunks():
    """The fast scoring path (numpy preprocessing replay, transposed cross-entropies, CPU chunks,
    integer-keyed top-k names) gives what the ColumnTransformer, the block-by-block training loss
    and a row-wise join give, to float rounding."""
    rng = np.random.default_rng(5)

    def frame(n_rows: int) -> pd.DataFrame:
        data = mixed_frame(n_rows, seed=int(rng.integers(1000)))
        data["amount"] = data["amount"].where(rng.random(n_rows) > 0.05)
        data["size"] = rng.choice(
            ["s", "m", "l", "xl", "xxl"], n_rows, p=[0.4, 0.3, 0.2, 0.09, 0.01]
        )
        data["region"] = pd.Categorical(rng.choice(list("abcdefgh"), n_rows))
        return data

    columns = {
        "numeric_columns": ["amount", "fee", "count"],
        "categorical_columns": ["channel", "size", "region"],
    }
    detector = AutoencoderDetector(**columns, **FAST, n_members=2, min_frequency=20).fit(frame(600))
    rows = frame(5000)  # more than two CPU inference chunks, the last one partial
    rows.loc[0, "size"] = "unseen"
    rows.loc[1, "channel"] = "fax"
    rows.loc[2, "region"] = None
    result = detector.score(rows, top_k=3)

    normalised = normalise_frame(rows, detector.numeric_columns_, detector.categorical_columns_)
    features = detector.preprocessor_.transform(normalised).astype(np.float32)
    np.clip(features, -1e4, 1e4, out=features)
    # scikit-learn applies the power transform (lambda 1: the identity up to rounding) to every
    # column; the replay skips it where lambda is 1.
    np.testing.assert_allclose(detector._features(rows).numpy(), features, rtol=1e-6, atol=1e-6)
    column_errors = ColumnErrors(detector.layout_, "cpu")
    target = detector._features(rows)
    scorer = detector.column_scorer_.torch_state(detector.layout_, torch.device("cpu"))
    errors = []
    with torch.enable_grad():  # a graph makes ColumnErrors take its block-by-block training path
        for network in detector.networks_:
            output = network(target)[0]
            assert output.requires_grad
            errors.append(column_errors(output, target).detach())
    expected = scorer(errors, target).numpy()
    np.testing.assert_allclose(result.contributions, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.scores, expected.sum(axis=1), rtol=1e-5)
    names = np.asarray(detector.feature_names_in_)
    ranking = expected / detector.column_scorer_.rank_scale
    best = np.argsort(-ranking, axis=1, kind="stable")[:, :3]
    assert result.top_features == [
        ",".join(names[[c for c in row if expected[i, c] > 0]]) for i, row in enumerate(best)
    ]


def test_a_row_gets_the_same_bits_alone_and_in_any_chunk(fitted):
    """Online requests score one row or a few; batches score chunks of thousands. A row's score,
    percentile, latent features and contributions must not change in their last bits with the
    rows scored beside it (torch's kernels differ for a few rows and for ragged tails)."""
    rows = mixed_frame(300, seed=3)
    whole = fitted.score(rows)
    for start, stop in ((0, 1), (5, 6), (7, 10), (11, 28), (100, 233), (299, 300)):
        part = fitted.score(rows.iloc[start:stop])
        for field in ("scores", "percentiles", "latent", "contributions"):
            np.testing.assert_array_equal(
                getattr(part, field), getattr(whole, field)[start:stop], err_msg=field
            )
        assert part.top_features == whole.top_features[start:stop]


def test_the_typical_error_floor_bounds_the_surprise_of_an_exactly_reconstructed_column():
    """A column that is one value on most rows (bank's ``pdays``) is reconstructed almost exactly
    on them, so its typical error is near 0; its surprise is measured against
    ``typical_error_floor`` instead, so a small error stays a small surprise."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    frame["mostly"] = np.where(rng.random(400) < 0.9, 0.0, rng.normal(5, 1, size=400))
    rows = frame[frame["mostly"] == 0].iloc[:50].copy()
    rows["mostly"] = 0.2  # a small move from the modal value
    scales, surprises = {}, {}
    for floor in (0.01, 0.1):
        detector = AutoencoderDetector(**FAST, typical_error_floor=floor).fit(frame)
        column = list(detector.feature_names_in_).index("mostly")
        scales[floor] = detector.column_scorer_.recon_scale[0, column]
        surprises[floor] = detector.explain(rows, top_k=None)["mostly"].median()
    assert scales[0.1] == pytest.approx(2 * 0.1) and scales[0.01] < scales[0.1] / 3
    assert surprises[0.01] > 3 * surprises[0.1]
    with pytest.raises(ValueError, match="typical_error_floor must be > 0"):
        AutoencoderDetector(**FAST, typical_error_floor=0).fit(frame)
