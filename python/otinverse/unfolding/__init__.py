"""Unfolding: OT unfolding with a Wasserstein loss (Craig, Faktor & Nachman) and the
Richardson–Lucy / IBU baseline, for MC events with weights, inefficiency and fakes, in absolute
event counts; bootstrap uncertainties (serial or on Dask), closure tests and regularisation
scans, and the plots of an analysis.

* :mod:`.estimators`: :class:`OTUnfolder`, :class:`RichardsonLucyUnfolder`, :func:`richardson_lucy`.
* :mod:`.bootstrap`: :func:`bootstrap`, :class:`BootstrapResult`.
"""

from .bootstrap import BootstrapResult, bootstrap
from .estimators import OTUnfolder, RichardsonLucyUnfolder, UnfoldingProblem, richardson_lucy

__all__ = [
    "BootstrapResult",
    "OTUnfolder",
    "RichardsonLucyUnfolder",
    "UnfoldingProblem",
    "bootstrap",
    "richardson_lucy",
]
