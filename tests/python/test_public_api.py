"""The public names: ``otinverse.__all__`` pinned, each importable without a warning, the names
of the flat layout all still there, and its module paths forwarding with a DeprecationWarning."""

import importlib
import subprocess
import sys
import warnings

import numpy as np
import otinverse
import pytest

ALL = {
    "BatchSinkhornResult",
    "BernoulliMixture",
    "EMDTransport",
    "EntropicSparsifier",
    "InvalidArgumentError",
    "InvalidDtypeError",
    "NumericalError",
    "OTClassifier",
    "OTUnfolder",
    "Response",
    "RichardsonLucyUnfolder",
    "SinkhornResult",
    "SinkhornTransport",
    "StarClusterClassifier",
    "WPPRestorer",
    "__version__",
    "add_defects",
    "classification",
    "costs",
    "count_peaks",
    "da",
    "datasets",
    "grid_cost",
    "grid_points",
    "ground_cost",
    "imaging",
    "iterative_unfold",
    "make_star_groups",
    "make_star_patches",
    "penalized_least_squares",
    "richardson_lucy",
    "sinkhorn",
    "sinkhorn_batch",
    "sinkhorn_points",
    "solvers",
    "sparsify",
    "unfolding",
    "wasserstein",
    "wasserstein2_squared",
}

#: ``otinverse.__all__`` of the flat layout: every name must still resolve on the package.
FLAT_ALL = ALL - {
    "BatchSinkhornResult",
    "classification",
    "costs",
    "da",
    "imaging",
    "solvers",
    "unfolding",
} | {
    "metrics",
    "operators",
}

#: Old module path → a name it defined and the public home of that name now.
MOVED = [
    ("ot", "sinkhorn_points", "solvers"),
    ("batch", "sinkhorn_batch", "solvers"),
    ("metrics", "wasserstein2_squared", "solvers"),
    ("ground_cost", "grid_points", "costs"),
    ("transport", "SinkhornTransport", "da"),
    ("classify", "OTClassifier", "classification"),
    ("mixture", "BernoulliMixture", "classification"),
    ("operators", "BlurSubsampleOperator", "imaging"),
    ("restore", "WPPRestorer", "imaging"),
    ("restore", "add_defects", "datasets"),
    ("restore", "gaussian_kernel", "imaging"),
    ("pls", "penalized_least_squares", "imaging"),
    ("datasets_imaging", "make_filaments", "datasets"),
    ("datasets_stars", "star_psf", "datasets"),
    ("datasets_textures", "make_texture_denoising", "datasets"),
]


def test_all_is_pinned_and_resolves_without_warnings():
    assert set(otinverse.__all__) == ALL
    assert len(otinverse.__all__) == len(ALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in otinverse.__all__:
            assert getattr(otinverse, name) is not None
        namespace = {}
        exec("from otinverse import *", namespace)
    assert ALL <= set(namespace)


#: Never imported by ``import otinverse``, nor by importing all its public names: the optional
#: extras (learn, hep, dask) and matplotlib, which only the plotting functions and
#: load_micrograph import when called.
NEVER_AT_IMPORT = [
    "jax",
    "torch",
    "dask",
    "distributed",
    "uproot",
    "awkward",
    "hist",
    "mplhep",
    "matplotlib",
]
#: Loaded by the subpackages only: ``import otinverse`` imports them on first access (PEP 562).
LAZY = ["sklearn", "scipy", "pandas", "ot", "tqdm", "otinverse.unfolding", "otinverse.solvers"]


def _loaded_after(statement, modules):
    code = f"import sys; {statement}; print(' '.join(m for m in {modules!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return run.stdout.split()


def test_import_otinverse_loads_neither_subpackages_nor_heavy_dependencies():
    assert _loaded_after("import otinverse", NEVER_AT_IMPORT + LAZY) == []
    assert _loaded_after("from otinverse import *", NEVER_AT_IMPORT) == []


def test_dir_lists_the_lazily_imported_names():
    assert set(otinverse.__all__) <= set(dir(otinverse))
    # Every lazily imported name is public, and every public name is eager or lazy.
    lazy = set(otinverse._EXPORTS) | set(otinverse._SUBPACKAGES)
    eager = {"InvalidArgumentError", "InvalidDtypeError", "NumericalError", "__version__"}
    assert lazy | eager == set(otinverse.__all__)


def test_subpackages_re_export_their_public_names_at_the_top():
    for sub in ("classification", "costs", "da", "datasets", "imaging", "solvers", "sparsify"):
        module = getattr(otinverse, sub)
        for name in module.__all__:
            if name in ALL:
                assert getattr(otinverse, name) is getattr(module, name), (sub, name)


@pytest.mark.parametrize("name", sorted(FLAT_ALL))
def test_every_name_of_the_flat_layout_still_resolves(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert getattr(otinverse, name) is not None


@pytest.mark.parametrize(("old", "name", "home"), MOVED, ids=lambda v: str(v))
def test_old_module_paths_warn_and_forward(monkeypatch, old, name, home):
    # Forget an earlier import of the old path, so that this one runs (and warns) again.
    monkeypatch.delitem(sys.modules, f"otinverse.{old}", raising=False)
    with pytest.warns(DeprecationWarning, match=rf"otinverse\.{old} is deprecated"):
        module = importlib.import_module(f"otinverse.{old}")
    assert getattr(module, name) is getattr(importlib.import_module(f"otinverse.{home}"), name)


def test_importing_the_old_ground_cost_module_keeps_the_function():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module("otinverse.ground_cost")
    assert module.grid_cost is otinverse.grid_cost
    assert otinverse.ground_cost is otinverse.costs.ground_cost


def test_the_old_ground_cost_module_imported_first_does_not_shadow_the_function():
    # In a fresh interpreter the function has not been looked up (imported lazily) yet.
    statement = (
        "import warnings; warnings.simplefilter('ignore'); import otinverse.ground_cost; "
        "import otinverse.costs; assert otinverse.ground_cost is otinverse.costs.ground_cost"
    )
    _loaded_after(statement, [])


def test_point_cloud_functions_take_the_points_first_and_still_accept_the_old_order(rng):
    x, y = rng.random((7, 2)), rng.random((5, 2))
    a, b = rng.random(7) + 0.1, rng.random(5) + 0.1
    b *= a.sum() / b.sum()
    new = otinverse.sinkhorn_points(x, y, 0.1, a=a, b=b, tol=1e-12)
    for old in (
        lambda: otinverse.sinkhorn_points(a, x, b, y, 0.1, tol=1e-12),
        lambda: otinverse.sinkhorn_points(a, x, b, y=y, reg=0.1, tol=1e-12),
    ):
        with pytest.warns(DeprecationWarning, match=r"sinkhorn_points\(a, x, b"):
            np.testing.assert_array_equal(old().f, new.f)
    exact = otinverse.wasserstein(x, y, a=a, b=b)
    with pytest.warns(DeprecationWarning, match=r"wasserstein\(x, a, y, b"):
        assert otinverse.wasserstein(x, a, y, b) == exact
    # wasserstein2_squared is W2² of the normalised measures: wasserstein of unit masses.
    w2 = otinverse.wasserstein2_squared(x, y, a=a, b=b)
    assert w2 == pytest.approx(exact / a.sum(), rel=1e-12)
    with pytest.warns(DeprecationWarning, match=r"wasserstein2_squared\(x, a, y, b"):
        assert otinverse.wasserstein2_squared(x, a, y, b) == w2
