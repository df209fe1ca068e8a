"""Every public name (``otinverse.__all__`` and each subpackage's ``__all__``) has a page in the
documentation's API reference and a docstring that numpydoc's validator accepts.

The checks are numpydoc's (``numpydoc.validate``), minus the ones that judge style rather than
whether a reader finds what a name takes and returns:

* SA01 (See Also), EX01 (Examples), ES01 (extended summary): the gallery and the user guide
  carry the examples and the context.
* SS05 (summary starts with an infinitive verb), SS06 (one-line summary), GL02 (closing quotes
  on their own line): wording and layout only.
* PR05, PR07, PR08, RT03 (a parameter's type ends with a period, has a description starting
  with a capital letter, a returned value has a description): the compact house style states
  the type and the meaning on one line.
"""

import importlib
import sys
from pathlib import Path
from types import ModuleType

import otinverse
import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate", reason="needs the docs extra")

IGNORED_CHECKS = {"SA01", "EX01", "ES01", "SS05", "SS06", "GL02", "PR05", "PR07", "PR08", "RT03"}


DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path.insert(0, str(DOCS))
conf = importlib.import_module("conf")
sys.path.remove(str(DOCS))


def _documented() -> list[str]:
    """The dotted names the API reference documents (docs/conf.py writes its pages from the same
    ``__all__`` lists)."""
    names = [f"otinverse.{e}" for e in conf.EXCEPTIONS]
    for sub in conf.API_SUBPACKAGES:
        try:
            names += [f"otinverse.{sub}.{n}" for n in conf.public_objects(f"otinverse.{sub}")]
        except ImportError:
            continue
    return names


def test_every_public_name_has_an_api_page():
    """Every callable of ``otinverse.__all__`` is documented under its subpackage (or is an
    exception), and the reference covers every subpackage the package exports."""
    exported = {n for n in otinverse.__all__ if isinstance(getattr(otinverse, n), ModuleType)}
    # learn (the JAX extra) is not imported by otinverse, hence not in its __all__.
    assert exported | {"learn"} == set(conf.API_SUBPACKAGES)
    documented = {n.rsplit(".", 1)[1] for n in _documented()}
    top_level = {n for n in otinverse.__all__ if callable(getattr(otinverse, n))}
    missing = top_level - documented
    assert not missing, f"public names without an API page: {sorted(missing)}"


def _doc_object(name: str):
    """numpydoc's view of the object the API page documents: the attribute of the subpackage
    (by name, numpydoc would take ``otinverse.unfolding.bootstrap`` for the module of that name,
    not the function the subpackage exports)."""
    module, _, attr = name.rpartition(".")
    return numpydoc_validate.get_doc_object(getattr(importlib.import_module(module), attr))


@pytest.mark.parametrize("name", _documented())
def test_docstring_is_valid_numpydoc(name):
    errors = {
        code: message
        for code, message in numpydoc_validate.validate(_doc_object(name))["errors"]
        if code not in IGNORED_CHECKS
    }
    assert not errors, f"{name}: {errors}"
