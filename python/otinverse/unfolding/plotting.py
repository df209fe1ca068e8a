"""The plots of an unfolding analysis, with matplotlib — drawn by ``mplhep.histplot`` when
mplhep (the ``hep`` extra) is installed; each returns its ``Axes`` so that users restyle them
(e.g. ``mplhep.style.use("ROOT")``, experiment-neutral, or an experiment's). Binned results are
:class:`~otinverse.unfolding.bootstrap.BinnedResult`, :class:`~otinverse.unfolding.hep.UnfoldedHist`
or 1-D ``hist.Hist`` objects (errors: the square roots of their variances).

* :func:`plot_unfolded`: unfolded histogram(s) with error bars against the truth, with a ratio
  panel.
* :func:`plot_correlation`: the bin-to-bin correlation matrix.
* :func:`plot_scan`: squared bias, variance and MSE of a regularisation scan.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from .hep import UnfoldedHist, as_hist, is_hist

__all__ = ["plot_correlation", "plot_scan", "plot_unfolded"]


def _centres(edges):
    return 0.5 * (edges[1:] + edges[:-1])


@dataclass(frozen=True)
class _Binned:
    edges: np.ndarray
    values: np.ndarray
    std: np.ndarray
    corr: np.ndarray | None


def _binned(result):
    """Edges, values, errors (and correlation) of any of the binned result types."""
    result = as_hist(result)  # a TH1 read by uproot
    if isinstance(result, UnfoldedHist):
        h = result.hist
        return _Binned(np.asarray(h.axes[0].edges), h.values(), result.std, result.correlation)
    if is_hist(result):
        variances = result.variances()
        std = np.zeros(result.values().shape) if variances is None else np.sqrt(variances)
        return _Binned(np.asarray(result.axes[0].edges), result.values(), std, None)
    return _Binned(result.edges, result.values, result.std, result.corr)


def _mplhep():
    try:
        import mplhep
    except ImportError:
        return None
    return mplhep


def _style(new_figure):
    """mplhep's experiment-neutral ROOT style for a figure this module creates (a figure the
    user passes keeps the user's style)."""
    hep = _mplhep()
    if not new_figure or hep is None:
        return contextlib.nullcontext()
    import matplotlib.pyplot as plt

    return plt.style.context(hep.style.ROOT)


def _draw_truth(ax, values, edges, label):
    hep = _mplhep()
    if hep is None:
        ax.stairs(values, edges, color="k", label=label)
    else:
        hep.histplot(values, edges, histtype="step", color="k", label=label, ax=ax)


def _draw_points(ax, x, edges, values, errors, labels):
    """Points with error bars: ``mplhep.histplot`` (offset within the bins) or matplotlib."""
    hep = _mplhep()
    if hep is not None:
        hep.histplot(
            list(values),
            edges,
            yerr=list(errors),
            histtype="errorbar",
            label=labels,
            xoffsets=len(values) > 1,
            ax=ax,
            markersize=3,
        )
        return
    width = np.diff(edges)
    labels = labels or [None] * len(values)
    for i, (v, e, label) in enumerate(zip(values, errors, labels, strict=True)):
        shift = (i - (len(values) - 1) / 2) * 0.15 * width
        ax.errorbar(x + shift, v, yerr=e, fmt="o", ms=3, label=label)


def plot_unfolded(
    results, truth=None, *, labels=None, truth_label="truth", ratio_ylim=(0.0, 2.0), axes=None
):
    """Unfolded binned results as points with error bars, the truth as a step line, and below a
    ratio panel (unfolded / truth, or / the first result without truth).

    Parameters
    ----------
    results : BinnedResult, UnfoldedHist, hist.Hist or list of them
        One binned result, or several with the same edges (drawn side by side in each bin); the
        error bars are their standard deviations.
    truth : array-like of shape (n_bins,), hist.Hist, UnfoldedHist or None, default=None
        The truth in the same bins (events per bin), or a histogram of it.
    labels : list of str or None, default=None
        Legend entries of ``results`` (default ``"unfolded"``, or ``"unfolded i"``).
    truth_label : str, default="truth"
        Legend entry of the truth, also the ratio panel's denominator label.
    ratio_ylim : (float, float) or None, default=(0.0, 2.0)
        The ratio panel's range (``None``: matplotlib's, which a nearly empty truth bin
        stretches).
    axes : (matplotlib.axes.Axes, matplotlib.axes.Axes) or None, default=None
        A pair (main, ratio) to draw into; ``None``: a new figure (in mplhep's ROOT style when
        mplhep is installed).

    Returns
    -------
    (matplotlib.axes.Axes, matplotlib.axes.Axes)
        The main and the ratio panel.
    """
    with _style(axes is None):
        return _plot_unfolded(results, truth, labels, truth_label, ratio_ylim, axes)


def _plot_unfolded(results, truth, labels, truth_label, ratio_ylim, axes):
    import matplotlib.pyplot as plt

    results = [_binned(r) for r in (results if isinstance(results, list | tuple) else [results])]
    labels = labels or [
        f"unfolded {i}" if len(results) > 1 else "unfolded" for i in range(len(results))
    ]
    if axes is None:
        size = (6, 5) if _mplhep() is None else (9, 8)  # the ROOT style's larger fonts
        _, axes = plt.subplots(
            2, 1, sharex=True, figsize=size, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
        )
    main, ratio = axes
    edges = results[0].edges
    x = _centres(edges)
    if truth is not None and (is_hist(truth) or isinstance(truth, UnfoldedHist)):
        truth = _binned(truth).values
    ref = results[0].values if truth is None else np.asarray(truth, dtype=float)
    if truth is not None:
        _draw_truth(main, ref, edges, truth_label)
    values = [r.values for r in results]
    errors = [r.std for r in results]
    _draw_points(main, x, edges, values, errors, labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        _draw_points(ratio, x, edges, [v / ref for v in values], [e / ref for e in errors], None)
    ratio.axhline(1.0, color="k", lw=0.8)
    if ratio_ylim is not None:
        ratio.set_ylim(*ratio_ylim)
    main.set_ylabel("events per bin")
    ratio.set_ylabel(f"/ {truth_label if truth is not None else labels[0]}")
    main.legend()
    return main, ratio


def plot_correlation(result, *, ax=None, cmap="RdBu_r"):
    """The bin-to-bin correlation matrix of a binned result, colour in [−1, 1], with a colour bar.

    Parameters
    ----------
    result : BinnedResult or UnfoldedHist
        A result with a covariance (a plain ``hist.Hist`` has none: ``TypeError``).
    ax : matplotlib.axes.Axes or None, default=None
        Where to draw; ``None``: a new figure.
    cmap : str or matplotlib.colors.Colormap, default="RdBu_r"
        The colour map (a diverging one centred on 0).

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    result = _binned(result)
    if result.corr is None:
        raise TypeError("result: a hist.Hist carries no covariance; pass an UnfoldedHist")
    edges = result.edges
    mesh = ax.pcolormesh(edges, edges, result.corr, cmap=cmap, vmin=-1, vmax=1)
    ax.figure.colorbar(mesh, ax=ax, label="correlation")
    ax.set_aspect("equal")
    ax.set_xlabel("bin")
    ax.set_ylabel("bin")
    return ax


def plot_scan(scan_result, *, ax=None, logx=None):
    """Squared bias, variance and MSE of a regularisation scan against the scanned values, on a
    logarithmic y axis, the least MSE marked.

    Parameters
    ----------
    scan_result : ScanResult
        The result of :func:`scan`.
    ax : matplotlib.axes.Axes or None, default=None
        Where to draw; ``None``: a new figure.
    logx : bool or None, default=None
        Logarithmic x axis; ``None``: when the values are positive and span more than a factor
        50.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    v = np.asarray(scan_result.values, dtype=float)
    ax.plot(v, scan_result.bias2, "o-", label="bias²")
    ax.plot(v, scan_result.variance, "s-", label="variance (bootstrap)")
    ax.plot(v, scan_result.mse, "k^-", label="MSE")
    ax.axvline(float(scan_result.best), color="grey", ls=":", label=f"best = {scan_result.best:g}")
    if logx if logx is not None else v.min() > 0 and v.max() / v.min() > 50:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(scan_result.param)
    ax.set_ylabel("events²")
    ax.legend()
    return ax
