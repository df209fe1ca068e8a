"""The plots of an unfolding analysis, with matplotlib; each returns its ``Axes`` so that users
restyle them.

* :func:`plot_unfolded`: unfolded histogram(s) with error bars against the truth, with a ratio
  panel.
* :func:`plot_correlation`: the bin-to-bin correlation matrix.
* :func:`plot_scan`: squared bias, variance and MSE of a regularisation scan.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_correlation", "plot_scan", "plot_unfolded"]


def _centres(edges):
    return 0.5 * (edges[1:] + edges[:-1])


def plot_unfolded(
    results, truth=None, *, labels=None, truth_label="truth", ratio_ylim=(0.0, 2.0), axes=None
):
    """Unfolded :class:`~otinverse.unfolding.bootstrap.BinnedResult` (one, or a list with the
    same edges) as points with error bars, ``truth`` (counts in the same bins) as a step line,
    and below a ratio panel (unfolded / truth, or / the first result without truth).

    ``ratio_ylim``: the ratio panel's range (None: matplotlib's, which a nearly empty truth bin
    stretches). ``axes``: a pair (main, ratio) to draw into; default a new figure. Returns
    (main, ratio).
    """
    import matplotlib.pyplot as plt

    results = results if isinstance(results, list | tuple) else [results]
    labels = labels or [
        f"unfolded {i}" if len(results) > 1 else "unfolded" for i in range(len(results))
    ]
    if axes is None:
        _, axes = plt.subplots(
            2, 1, sharex=True, figsize=(6, 5), gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
        )
    main, ratio = axes
    edges = results[0].edges
    x = _centres(edges)
    width = np.diff(edges)
    ref = results[0].values if truth is None else np.asarray(truth, dtype=float)
    if truth is not None:
        main.stairs(ref, edges, color="k", label=truth_label)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i, (res, label) in enumerate(zip(results, labels, strict=True)):
            shift = (i - (len(results) - 1) / 2) * 0.15 * width
            main.errorbar(x + shift, res.values, yerr=res.std, fmt="o", ms=3, label=label)
            ratio.errorbar(x + shift, res.values / ref, yerr=res.std / ref, fmt="o", ms=3)
    ratio.axhline(1.0, color="k", lw=0.8)
    if ratio_ylim is not None:
        ratio.set_ylim(*ratio_ylim)
    main.set_ylabel("events per bin")
    ratio.set_ylabel(f"/ {truth_label if truth is not None else labels[0]}")
    main.legend()
    return main, ratio


def plot_correlation(result, *, ax=None, cmap="RdBu_r"):
    """The correlation matrix of a :class:`BinnedResult` (bins × bins, colour in [−1, 1]) with a
    colour bar. Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    edges = result.edges
    mesh = ax.pcolormesh(edges, edges, result.corr, cmap=cmap, vmin=-1, vmax=1)
    ax.figure.colorbar(mesh, ax=ax, label="correlation")
    ax.set_aspect("equal")
    ax.set_xlabel("bin")
    ax.set_ylabel("bin")
    return ax


def plot_scan(scan_result, *, ax=None, logx=None):
    """Squared bias, variance and MSE of a :class:`~otinverse.unfolding.closure.ScanResult`
    against the scanned values, the least MSE marked. Returns the Axes."""
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
