"""The anchors: PyOD's definitions (compared with PyOD itself where it is installed), higher =
more anomalous, finite scores."""

import numpy as np
import pytest

from tasks.anchors import ANCHORS, PYOD_ONLY, available_anchors, fit_score, make_anchor

PLAIN = [name for name in ANCHORS if name not in PYOD_ONLY]


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4))
    test = np.vstack([train[:50] + rng.normal(scale=0.05, size=(50, 4)), train[:10] * 6 + 5])
    return train, test


@pytest.mark.parametrize("name", PLAIN)
def test_every_anchor_scores_far_rows_above_ordinary_ones(name):
    train, test = _data()
    (scores,) = fit_score(name, 0, train, [test], use_pyod=False)
    assert scores.shape == (60,) and np.isfinite(scores).all()
    assert scores[50:].min() > np.median(scores[:50])


@pytest.mark.parametrize("name", ["ECOD", "HBOS", "KNN", "IForest"])
def test_own_implementations_rank_like_pyod(name):
    pytest.importorskip("pyod")
    train, test = _data(1)
    (ours,) = fit_score(name, 0, train, [test], use_pyod=False)
    (theirs,) = fit_score(name, 0, train, [test], use_pyod=True)
    if name in ("KNN", "IForest"):  # the same computation (PyOD's IForest shifts by a constant)
        np.testing.assert_allclose(ours - ours.mean(), theirs - theirs.mean(), atol=1e-9)
    else:  # ECOD refits on the scored rows in PyOD; HBOS bins the same way
        assert np.corrcoef(np.argsort(np.argsort(ours)), np.argsort(np.argsort(theirs)))[0, 1] > 0.9


def test_pca_keeps_the_rank_so_collinear_columns_give_finite_scores():
    train, test = _data(2)
    train = np.column_stack([train, train[:, 0] * 2, np.ones(len(train))])  # collinear + constant
    test = np.column_stack([test, test[:, 0] * 2, np.ones(len(test))])
    (scores,) = fit_score("PCA", 0, train, [test], use_pyod=False)
    assert np.isfinite(scores).all() and scores[50:].min() > np.median(scores[:50])


def test_pca_is_pyods_definition_computed_with_one_decomposition():
    # PyOD's PCA: every component up to the matrix rank, each row's Euclidean distance to each
    # component vector over its explained variance ratio, summed.
    from scipy.spatial.distance import cdist
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    train, test = _data(3)
    train = np.column_stack([train, train[:, 1] - train[:, 2], np.ones(len(train))])
    test = np.column_stack([test, test[:, 1] - test[:, 2], np.ones(len(test))])
    standardised = StandardScaler().fit(train).transform(train)
    rank = np.linalg.matrix_rank(standardised)
    pca = PCA(n_components=rank, svd_solver="full").fit(standardised)
    expected = (
        cdist(StandardScaler().fit(train).transform(test), pca.components_)
        / pca.explained_variance_ratio_
    ).sum(axis=1)
    anchor = make_anchor("PCA", 0, use_pyod=False).fit(train)
    assert len(anchor.components_) == rank == 4
    np.testing.assert_allclose(anchor.decision_function(test), expected, rtol=1e-9)


def test_unknown_anchor_and_missing_pyod_are_clear_errors():
    with pytest.raises(ValueError, match="unknown anchor 'LOF'"):
        make_anchor("LOF", 0)
    with pytest.raises(ValueError, match="needs PyOD"):
        make_anchor("DIF", 0, use_pyod=False)
    assert set(PLAIN) <= set(available_anchors())
