"""Sphinx configuration of the otinverse documentation site.

Build: ``sphinx-build -W --keep-going docs docs/_build/html`` (the ``docs`` extra). The API
reference is written at build time from each subpackage's ``__all__`` (``api_pages``), so a new
public name gets its page without an edit here; the gallery executes every
``docs/examples/plot_*.py``.
"""

from importlib import import_module
from pathlib import Path

import otinverse

project = "otinverse"
author = "the otinverse developers"
copyright = "2026, the otinverse developers"
version = release = otinverse.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",  # docs/architecture.md, also read on GitHub, as a page
]

exclude_patterns = ["_build", "examples/README.txt"]
templates_path = ["_templates"]
html_theme = "pydata_sphinx_theme"
html_title = f"otinverse {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}

autosummary_generate = True
autodoc_typehints = "none"  # numpydoc renders the types from the docstrings
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

#: The subpackages whose ``__all__`` the API reference documents, in reading order, and the
#: exceptions, which live at the top level only.
API_SUBPACKAGES = (
    "solvers",
    "costs",
    "unfolding",
    "sparsify",
    "classification",
    "da",
    "imaging",
    "datasets",
    "learn",
)
EXCEPTIONS = ("InvalidArgumentError", "InvalidDtypeError", "NumericalError")


def public_objects(module_name: str) -> list[str]:
    """The names of ``module.__all__`` that get a page: functions, classes, not submodules or
    constants (their text is in the module's page)."""
    module = import_module(module_name)
    return [
        name
        for name in module.__all__
        if callable(getattr(module, name)) and not name.startswith("_")
    ]


def api_pages(srcdir: Path) -> None:
    """Writes docs/api/<subpackage>.rst: the module docstring and an autosummary of its names.
    Run when this file is read, so that the pages exist before Sphinx looks for sources."""
    out = srcdir / "api"
    out.mkdir(exist_ok=True)
    entries = []
    for sub in API_SUBPACKAGES:
        module = f"otinverse.{sub}"
        try:
            names = public_objects(module)
        except ImportError:  # the learn extra (JAX) is not installed
            continue
        entries.append(sub)
        items = "\n".join(f"   {n}" for n in names)
        title = f"``{module}``"
        text = (
            f"{title}\n{'=' * len(title)}\n\n.. automodule:: {module}\n   :no-members:\n\n"
            f".. currentmodule:: {module}\n\n.. autosummary::\n   :toctree: generated/\n\n"
            f"{items}\n"
        )
        _write_if_changed(out / f"{sub}.rst", text)
    items = "\n".join(f"   {n}" for n in EXCEPTIONS)
    exceptions = (
        "Exceptions\n==========\n\n.. currentmodule:: otinverse\n\n"
        f".. autosummary::\n   :toctree: generated/\n\n{items}\n"
    )
    _write_if_changed(out / "exceptions.rst", exceptions)
    toc = "\n".join(f"   api/{e}" for e in [*entries, "exceptions"])
    index = (
        "API reference\n=============\n\nEvery name below is also importable from ``otinverse``"
        " itself (``from otinverse import OTUnfolder``).\n\n"
        f".. toctree::\n   :maxdepth: 1\n\n{toc}\n"
    )
    _write_if_changed(srcdir / "api.rst", index)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # execute every plot_*.py
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "min_reported_time": 0,
}

# Sphinx runs this file with `tags` defined; the tests import it only for its lists.
if "tags" in globals():
    api_pages(Path(__file__).resolve().parent)


def _skip_metadata_requests(app, what, name, obj, skip, options):
    """scikit-learn adds ``set_<method>_request`` to every estimator (metadata routing); their
    docstrings link into scikit-learn's own site, so they are left to it."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
