"""Input validation and fitted behaviour of OTClassifier, BernoulliMixture and the transport
estimators (scikit-learn's check suite runs in test_estimator_checks.py)."""

import numpy as np
import pytest
from otinverse import BernoulliMixture, EMDTransport, OTClassifier, SinkhornTransport
from sklearn.base import clone
from sklearn.datasets import load_digits


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


@pytest.mark.parametrize(
    "X_fn,params,match",
    [
        (lambda X: -X, {}, "non-negative"),
        (lambda X: np.vstack([np.zeros((1, 64)), X[1:]]), {}, "no mass"),
        (lambda X: X, {"image_shape": (7, 9)}, "image_shape"),
        (lambda X: X.reshape(-1, 4, 4, 4), {}, "X"),
        (lambda X: X, {"cost": "cosine"}, "cost"),
        (lambda X: X, {"prototypes": "samples", "n_prototypes": 500}, "n_prototypes"),
        (lambda X: X, {"prototypes": "mixture", "n_prototypes": 500}, "n_prototypes"),
        (lambda X: X, {"prototypes": "mean", "n_prototypes": 2}, "n_prototypes"),
        (lambda X: X, {"reg": 0.0}, "reg"),
        (lambda X: X, {"scheme": "da", "translation": True}, "translation"),
    ],
)
def test_bad_input_raises_value_errors(digits, X_fn, params, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        OTClassifier(**params).fit(X_fn(X), y)


def test_predict_checks_images(digits):
    X, y = digits
    clf = OTClassifier(reg=1.0).fit(X.reshape(-1, 8, 8), y)
    assert clf.image_shape_ == (8, 8) and clf.prototypes_.shape == (10, 64)
    with pytest.raises(ValueError, match="non-negative"):
        clf.predict(-X[:3])
    with pytest.raises(ValueError, match="no mass"):
        clf.predict(np.zeros((2, 64)))
    with pytest.raises(ValueError, match="fitted on"):
        clf.predict(np.ones((2, 4, 16)))
    proba = clf.predict_proba(X[:5])
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert (clf.classes_[proba.argmax(1)] == clf.predict(X[:5])).all()


def test_verbose_shows_progress(digits, capsys):
    X, y = digits
    OTClassifier(reg=1.0, verbose=True).fit(X, y).predict(X[:70])
    assert "OT classify" in capsys.readouterr().err


def test_mixture_drops_empty_components():
    X, y = load_digits(return_X_y=True)
    zeros = X[:1000][y[:1000] == 0] / 16.0
    bm = BernoulliMixture(5, random_state=0).fit(zeros)
    # About 100 zeros do not fill five components: the empty ones are dropped, not returned
    # with their smoothed θ ≈ 0.5.
    assert bm.n_components_ < 5 and bm.means_.shape == (bm.n_components_, 64)
    assert (bm.weights_ * len(zeros) >= 1).all()
    assert bm.predict_proba(zeros).shape == (len(zeros), bm.n_components_)


def test_mixture_components_on_digits_are_never_empty(digits):
    X, y = digits
    for c in range(10):
        bm = BernoulliMixture(5, random_state=c).fit(X[y == c])
        assert (bm.weights_ * (y == c).sum() >= 1).all()
        assert not np.allclose(bm.means_, 0.5, atol=0.05)


def test_mixture_contract_and_errors(digits):
    X, _ = digits
    bm = BernoulliMixture(3, random_state=0)
    assert clone(bm).get_params() == bm.get_params()
    assert bm.fit(X) is bm and bm.converged_
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BernoulliMixture().fit(X * 16)
    with pytest.raises(ValueError, match="n_components"):
        BernoulliMixture(400).fit(X)


def test_transport_estimators_contract(digits):
    X, y = digits
    Xs, ys, Xt = X[:60], y[:60], X[60:100]
    for est in (SinkhornTransport(1.0, metric="atan", norm="median"), EMDTransport(norm="max")):
        assert clone(est).get_params() == est.get_params()
        assert est.fit(Xs, ys, Xt=Xt) is est
        np.testing.assert_allclose(est.coupling_.sum(0), 1 / 40, rtol=1e-8)
        labels = est.transform_labels()
        assert labels.shape == (40, len(np.unique(ys)))
        np.testing.assert_allclose(labels.sum(1), 1.0)
        mapped = est.transform(Xs)
        assert mapped.shape == Xs.shape
        # A new sample moves like its nearest fitted source sample (POT's out-of-sample map).
        np.testing.assert_allclose(est.transform(Xs[:2] + 1e-3), mapped[:2] + 1e-3)
    with pytest.raises(ValueError, match="Xt"):
        SinkhornTransport().fit(Xs, ys, Xt=Xt[:, :5])
    with pytest.raises(ValueError, match="metric"):
        SinkhornTransport(metric="nope").fit(Xs, ys, Xt=Xt)


def test_exact_costs_are_pot_emd2_of_every_pair(digits):
    # Exact OT solves each (image, prototype) pair on the two supports: POT's ot.emd2 on the
    # whole histograms is the reference.
    ot = pytest.importorskip("ot")
    X, y = digits
    clf = OTClassifier(cost="atan", reg=None, image_shape=(8, 8)).fit(X[:200], y[:200])
    H = X[200:230] / X[200:230].sum(axis=1, keepdims=True)
    expected = np.array([[ot.emd2(h, b, clf.ground_cost_) for b in clf.prototypes_] for h in H])
    np.testing.assert_allclose(-clf.decision_function(X[200:230]), expected, rtol=1e-12)


def test_exact_displacement_towards_one_pixel_is_its_offset_from_the_centre_of_mass():
    # A one-pixel target admits one plan only (everything moves to it): Σ γ_ij ([j] − [i]) is
    # that pixel minus the source's centre of mass.
    from otinverse.classification._classify import _emd_costs
    from otinverse.costs import grid_points, ground_cost

    pts = grid_points((5, 6))
    rng = np.random.default_rng(4)
    H = rng.random((3, 30)) * (rng.random((3, 30)) < 0.5)
    H /= H.sum(axis=1, keepdims=True)
    B = np.eye(30)[[0, 17, 29]]
    C = ground_cost(pts, cost="distance")
    costs, shifts = _emd_costs(H, B, C, pts)
    np.testing.assert_allclose(costs, H @ C[:, [0, 17, 29]], rtol=1e-12)
    np.testing.assert_allclose(shifts, pts[[0, 17, 29]][None] - (H @ pts)[:, None], atol=1e-12)
