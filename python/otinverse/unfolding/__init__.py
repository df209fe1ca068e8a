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
* :mod:`.response`: :class:`Response` (RooUnfold's ``Fill``/``Miss``/``Fake``),
  :class:`BinnedResponse`.
* :mod:`.hep`: awkward/pandas inputs, ``hist`` inputs and outputs (:class:`UnfoldedHist`); the
  optional ``hep`` extra.
"""

from .bootstrap import BinnedResult, BootstrapResult, bootstrap
from .closure import ClosureResult, ScanResult, closure_test, scan
from .efficiency import smoothed_efficiency
from .estimators import OTUnfolder, RichardsonLucyUnfolder, UnfoldingProblem, richardson_lucy
from .hep import UnfoldedHist
from .iterative import Callback, Logger, Regularizer, SplineRegularizer, iterative_unfold
from .plotting import plot_correlation, plot_scan, plot_unfolded
from .response import BinnedResponse, Response

__all__ = [
    "BinnedResponse",
    "BinnedResult",
    "BootstrapResult",
    "Callback",
    "ClosureResult",
    "Logger",
    "OTUnfolder",
    "Regularizer",
    "Response",
    "RichardsonLucyUnfolder",
    "ScanResult",
    "SplineRegularizer",
    "UnfoldedHist",
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
