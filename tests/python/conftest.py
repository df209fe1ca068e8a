import numpy as np
import pytest


def sq_cost(x, y):
    """Squared Euclidean cost matrix, computed independently of otinverse."""
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)
