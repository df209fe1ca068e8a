"""pytest plugin that runs pyunfold's own test modules against otinverse's ``iterative_unfold``.

Loaded with ``-p pyunfold_dropin_plugin`` before pyunfold's test modules are imported, so that
their ``from pyunfold.unfold import iterative_unfold`` binds otinverse's function; after
collection it checks that every collected module that names ``iterative_unfold`` holds it.
"""

import os

import pyunfold
import pyunfold.unfold
from otinverse.unfolding import iterative_unfold

pyunfold.unfold.iterative_unfold = iterative_unfold
pyunfold.iterative_unfold = iterative_unfold


def pytest_collection_finish(session):
    for item in session.items:
        module = getattr(item, "module", None)
        bound = getattr(module, "iterative_unfold", iterative_unfold)
        if bound is not iterative_unfold:
            raise RuntimeError(f"{module.__name__} still holds pyunfold's iterative_unfold")
    # pyunfold's wheel lacks the HDF reference files of its example tests, which look for them
    # next to their module: point the module at the sdist's copy when one is given.
    data_dir = os.environ.get("PYUNFOLD_TEST_DATA_DIR")
    if data_dir:
        import pyunfold.tests.test_unfold as test_unfold

        test_unfold.__file__ = os.path.join(os.path.dirname(data_dir), "test_unfold.py")
