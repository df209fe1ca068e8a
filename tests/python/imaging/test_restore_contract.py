"""WPPRestorer keeps scikit-learn's estimator contract: clone, get/set_params, pickling of a fitted
estimator, NotFittedError before fit, and predict/restore leave the fitted state unchanged and
give the same answer twice. (WPPRestorer's fit takes a reference image, not (X, y), so
`parametrize_with_checks` does not apply; these are the explicit checks instead.)"""

import pickle

import numpy as np
import pytest
from otinverse import WPPRestorer
from otinverse.imaging import WPPRestoration
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

# Small and fast: a 20×20 image is one pyramid level of 6×6 patches after ×4 degradation.
FAST = dict(
    n_scales=1,
    n_reference_patches=60,
    max_iter=3,
    sinkhorn_final_max_iter=20,
    reg=0.01,
    random_state=0,
)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(3)
    est = WPPRestorer(**FAST).fit(rng.random((28, 28)))
    low = est.degrade(rng.random((20, 20)))
    return est, low


def _state(est):
    """Every attribute of the estimator, arrays copied, so later changes are detectable."""
    return {
        k: [np.array(v, copy=True) for v in val] if isinstance(val, list) else val
        for k, val in vars(est).items()
    }


def _assert_same_state(before, after):
    assert before.keys() == after.keys()
    for k, v in before.items():
        if isinstance(v, list):
            assert len(v) == len(after[k])
            for a, b in zip(v, after[k], strict=True):
                np.testing.assert_array_equal(a, b)
        else:
            assert v == after[k] or (v is None and after[k] is None), k


def test_clone_and_params_round_trip():
    est = WPPRestorer(reach=None, max_iter=7, sinkhorn_eps_scaling=0.5)
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert twin.set_params(max_iter=9, reach=0.02) is twin
    assert (twin.max_iter, twin.reach, est.max_iter, est.reach) == (9, 0.02, 7, None)
    with pytest.raises(ValueError, match="not_a_parameter"):
        est.set_params(not_a_parameter=1)


def test_clone_of_a_fitted_estimator_is_unfitted(fitted):
    est, low = fitted
    with pytest.raises(NotFittedError):
        clone(est).predict(low)


@pytest.mark.parametrize("method", ["predict", "restore", "prior"])
def test_fitted_methods_raise_not_fitted_error(method):
    with pytest.raises(NotFittedError):
        getattr(WPPRestorer(**FAST), method)(
            np.zeros((20, 20)) if method == "prior" else np.zeros((2, 2))
        )


def test_predict_twice_is_the_same_and_leaves_the_estimator_unchanged(fitted):
    est, low = fitted
    before = _state(est)
    first = est.predict(low)
    second = est.predict(low)
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-12)
    _assert_same_state(before, _state(est))
    restored = est.restore(low)
    _assert_same_state(before, _state(est))
    assert isinstance(restored, WPPRestoration)
    np.testing.assert_allclose(restored.image, first, rtol=0, atol=1e-12)
    assert len(restored.history) == FAST["max_iter"] and restored.n_iter == FAST["max_iter"]


def test_pickled_fitted_estimator_predicts_the_same(fitted):
    est, low = fitted
    copy = pickle.loads(pickle.dumps(est))
    assert copy.get_params() == est.get_params()
    np.testing.assert_array_equal(copy.reference_patches_[0], est.reference_patches_[0])
    np.testing.assert_allclose(copy.predict(low), est.predict(low), rtol=0, atol=1e-12)


def test_tags_state_the_contract():
    tags = WPPRestorer().__sklearn_tags__()
    assert tags.requires_fit and not tags.target_tags.required
