"""Unfolding: OT unfolding with a Wasserstein loss (Craig, Faktor & Nachman) and the
Richardson–Lucy / IBU baseline, for MC events with weights, inefficiency and fakes, in absolute
event counts; bootstrap uncertainties (serial or on Dask), closure tests and regularisation
scans, and the plots of an analysis.

* :mod:`.estimators`: :class:`OTUnfolder`, :class:`RichardsonLucyUnfolder`, :func:`richardson_lucy`.
* :mod:`.iterative`: :func:`iterative_unfold`, pyunfold's function as a drop-in, and its
  callbacks :class:`Logger`, :class:`SplineRegularizer`, :class:`Callback`, :class:`Regularizer`.
* :mod:`.bootstrap`: :func:`bootstrap`, :class:`BootstrapResult`.
* :mod:`.efficiency`: :func:`smoothed_efficiency` (the estimators' default efficiency model).
* :mod:`.closure`: :func:`closure_test`, :func:`scan` (bias², variance, MSE).
* :mod:`.plotting`: :func:`plot_unfolded`, :func:`plot_correlation`, :func:`plot_scan`.
"""

from .bootstrap import BinnedResult, BootstrapResult, bootstrap
from .closure import ClosureResult, ScanResult, closure_test, scan
from .efficiency import smoothed_efficiency
from .estimators import OTUnfolder, RichardsonLucyUnfolder, UnfoldingProblem, richardson_lucy
from .iterative import Callback, Logger, Regularizer, SplineRegularizer, iterative_unfold
from .plotting import plot_correlation, plot_scan, plot_unfolded

__all__ = [
    "BinnedResult",
    "BootstrapResult",
    "Callback",
    "ClosureResult",
    "Logger",
    "OTUnfolder",
    "Regularizer",
    "RichardsonLucyUnfolder",
    "ScanResult",
    "SplineRegularizer",
    "UnfoldingProblem",
    "bootstrap",
    "closure_test",
    "iterative_unfold",
    "plot_correlation",
    "plot_scan",
    "plot_unfolded",
    "richardson_lucy",
    "scan",
    "smoothed_efficiency",
]
