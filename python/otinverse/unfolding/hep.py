"""The Scikit-HEP side of unfolding: awkward arrays and pandas columns in, ``hist`` histograms in
and out.

* :func:`to_numpy`: an awkward array (flat or regular; ``None`` = not reconstructed, OmniFold's
  placeholder, becomes a NaN row; a record array becomes one column per field) or a pandas
  Series/DataFrame (``NA`` → NaN) as the NumPy array the estimators take. Anything else passes
  through unchanged.
* :func:`response_from_hist`: a filled response ``hist.Hist`` (axes reco, gen) as the matrix
  ``P(reco bin | gen bin)``; the reco axis's flow bins hold the misses (a NaN reco lands in the
  overflow), so the column sums are the efficiencies — RooUnfold's convention.
* :class:`UnfoldedHist`: a binned unfolded result as a ``hist.Hist`` with ``Weight()`` storage
  (values, variances) and its covariance beside it; :func:`unfolded_hist` builds one from
  unfolded weights on gen points and replicas or a propagated covariance.

Nothing here imports awkward, pandas, hist or uproot until an object of theirs is passed in: the
``hep`` extra is optional and ``import otinverse`` loads none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._core import InvalidArgumentError

__all__ = [
    "UnfoldedHist",
    "as_hist",
    "is_hist",
    "response_from_hist",
    "to_numpy",
    "unfolded_hist",
]


def _module_of(x):
    return type(x).__module__.split(".", 1)[0]


def to_numpy(x, name="array"):
    """``x`` as a NumPy array when it is an awkward array or a pandas Series/DataFrame;
    anything else unchanged (the estimators' own validation then applies). Errors name the
    argument ``name``."""
    module = _module_of(x)
    if module == "awkward":
        return _awkward_to_numpy(x, name)
    if module == "pandas" and hasattr(x, "to_numpy"):
        return _pandas_to_numpy(x, name)
    return x


def _awkward_to_numpy(x, name):
    import awkward as ak

    if x.fields:  # a record: one column per field, in field order (a None record → a NaN row)
        return np.stack([_awkward_to_numpy(x[f], name) for f in x.fields], axis=-1)
    try:
        arr = ak.to_numpy(ak.to_regular(x, axis=None), allow_missing=True)
    except ValueError:
        raise InvalidArgumentError(
            f"{name}: an awkward array must be flat or regular (every event the same length), "
            f"got {x.type}"
        ) from None
    if not isinstance(arr, np.ma.MaskedArray):
        return arr
    if arr.dtype.kind not in "iuf":
        raise InvalidArgumentError(
            f"{name}: None (not reconstructed) is only allowed in numeric arrays, got {x.type}"
        )
    return np.ma.filled(arr.astype(np.float64), np.nan)


def _pandas_to_numpy(x, name):
    from pandas.api.types import is_bool_dtype

    dtypes = x.dtypes if hasattr(x, "columns") else [x.dtype]
    if all(is_bool_dtype(t) for t in dtypes):  # a reco_mask column
        return x.to_numpy(dtype=bool)
    try:
        return x.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{name}: pandas columns must be numeric ({exc})") from None


# ---------------------------------------------------------------------------------------------
# hist inputs
# ---------------------------------------------------------------------------------------------
def is_hist(x):
    """True for a ``hist.Hist`` / ``boost_histogram.Histogram`` or a histogram read by uproot
    (a TH1/TH2; without importing any of them)."""
    module = _module_of(x)
    if module == "uproot":
        return hasattr(x, "to_hist")
    return module in {"hist", "boost_histogram"} and hasattr(x, "axes")


def as_hist(x):
    """A histogram read from a ROOT file by uproot as a ``hist.Hist`` (flow bins included)."""
    return x.to_hist() if _module_of(x) == "uproot" and hasattr(x, "to_hist") else x


def _edges(axis):
    return np.asarray(axis.edges, dtype=np.float64)


def _check_same_axis(axis, reference, name, reference_name):
    if not np.array_equal(_edges(axis), _edges(reference)):
        raise InvalidArgumentError(
            f"{name}: its axis (edges {_edges(axis)}) differs from {reference_name}'s "
            f"(edges {_edges(reference)})"
        )


def response_from_hist(response):
    """``P(reco bin e | gen bin c)`` (n_reco, n_gen) of a filled response histogram with axes
    (reco, gen). Each gen bin's column is divided by its total *including the reco axis's
    underflow and overflow*: events filled with a reco outside the axis or NaN (not
    reconstructed) are misses, so the column sums are the efficiencies (RooUnfold's
    ``Mresponse``; a miss adds to the truth and lowers the efficiency). Gen flow is dropped; a
    reco axis without flow bins holds no misses (efficiency 1)."""
    if response.ndim != 2:
        raise InvalidArgumentError(
            f"response: a response histogram has 2 axes (reco, gen), got {response.ndim}"
        )
    reco_axis, gen_axis = response.axes
    counts = np.asarray(response.values(flow=True), dtype=np.float64)[:, _in_range(gen_axis)]
    if (counts < 0).any():
        raise InvalidArgumentError("response: negative bin contents")
    truth = counts.sum(axis=0)
    matrix = np.divide(counts, truth, out=np.zeros_like(counts), where=truth > 0)
    return matrix[_in_range(reco_axis)]


def hist_counts(h, name, axis=None, axis_name=""):
    """In-range ``(values, variances or None)`` of a 1-D histogram, its axis checked against
    ``axis`` when given."""
    if h.ndim != 1:
        raise InvalidArgumentError(f"{name}: expected a 1-D histogram, got {h.ndim} axes")
    if axis is not None:
        _check_same_axis(h.axes[0], axis, name, axis_name)
    variances = h.variances()
    return (
        np.asarray(h.values(), dtype=np.float64),
        None if variances is None else np.asarray(variances, dtype=np.float64),
    )


# ---------------------------------------------------------------------------------------------
# hist outputs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnfoldedHist:
    """A binned unfolded result as a ``hist`` histogram with its covariance (the estimators' and
    :class:`BootstrapResult`'s ``to_hist``; needs the ``hep`` extra).

    Each parameter is an attribute of the same name; ``values``, ``std`` and ``correlation``
    are derived from them.

    Parameters
    ----------
    hist : hist.Hist
        ``Weight()`` storage: values in events, variances the diagonal of the covariance (flow
        bins included).
    covariance : ndarray of shape (n_bins, n_bins)
        Over the in-range bins of ``hist``, flattened in C order over its axes.
    axes : tuple of str
        The names of ``hist``'s axes, in that order.
    errors : str
        Where the errors come from: ``"bootstrap (data)"`` or ``"bootstrap (mc)"`` (RooUnfold's
        toys), ``"propagated"`` (its ``kCovariance``), or ``"none"`` (NaN variances: bootstrap
        the fit).
    """

    hist: object
    covariance: np.ndarray
    axes: tuple
    errors: str

    @property
    def values(self):
        return self.hist.values()

    @property
    def std(self):
        return np.sqrt(self.hist.variances())

    @property
    def correlation(self):
        std = np.sqrt(np.diag(self.covariance))
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.covariance / np.outer(std, std)

    def covariance_hist(self):
        """The covariance of a 1-D result as a 2-D ``hist.Hist`` over (axis, axis) — a TH2D
        when written with uproot."""
        import hist

        if self.hist.ndim != 1:
            raise InvalidArgumentError("covariance_hist: only for a 1-D result")
        axis = self.hist.axes[0]
        name = axis.name or "x"
        pair = [
            hist.axis.Variable(_edges(axis), name=n, label=axis.label, flow=False)
            for n in (name, f"{name}_2")
        ]
        out = hist.Hist(*pair, storage=hist.storage.Double())
        out[...] = self.covariance
        return out


def _as_axes(bins, x):
    """hist axes from ``bins``: an int (equal bins over the range of ``x``), an array of edges,
    a hist axis, or a sequence of those (one per column of ``x``)."""
    import hist

    columns = x.shape[1]
    if isinstance(bins, list | tuple) and len(bins) > 0 and not np.isscalar(bins[0]):
        specs = list(bins)
    else:
        specs = [bins]
    if len(specs) != columns:
        raise InvalidArgumentError(
            f"bins: {len(specs)} axes for an observable with {columns} columns"
        )
    axes = []
    for a, spec in enumerate(specs):
        if hasattr(spec, "edges") and hasattr(spec, "index"):
            axes.append(spec)
        elif isinstance(spec, int | np.integer) and not isinstance(spec, bool):
            # The upper edge just above the largest value: hist's bins are half-open.
            lo, hi = np.nanmin(x[:, a]), np.nanmax(x[:, a])
            hi = np.nextafter(hi, np.inf) if hi > lo else lo + 1.0
            axes.append(hist.axis.Regular(int(spec), lo, hi))
        else:
            edges = np.asarray(spec, dtype=np.float64)
            if edges.ndim != 1 or edges.size < 2 or not (np.diff(edges) > 0).all():
                raise InvalidArgumentError(f"bins: edges must increase, got {spec!r}")
            axes.append(hist.axis.Variable(edges))
    return axes


def _flat_index(axes, x):
    """Index of every row of ``x`` in the flow-included storage of a histogram over ``axes``;
    a row outside an axis without flow bins (which ``hist`` drops) gets the index one past the
    storage's end."""
    flat = np.zeros(x.shape[0], dtype=np.int64)
    dropped = np.zeros(x.shape[0], dtype=bool)
    for a, axis in enumerate(axes):
        idx = np.asarray(axis.index(x[:, a]), dtype=np.int64)
        idx = idx + (1 if axis.traits.underflow else 0)
        dropped |= (idx < 0) | (idx >= axis.extent)
        flat = flat * axis.extent + np.clip(idx, 0, axis.extent - 1)
    flat[dropped] = int(np.prod([axis.extent for axis in axes]))
    return flat


def _in_range(axis):
    """The slice of an axis's in-range bins in its flow-included storage."""
    return slice(1, 1 + axis.size) if axis.traits.underflow else slice(0, axis.size)


def unfolded_hist(points, weights, bins, *, replicas=None, covariance=None, errors="none"):
    """An :class:`UnfoldedHist` of ``weights`` (L,) on ``points`` (L,) or (L, k) in ``bins``
    (see :func:`_as_axes`). Errors from ``replicas`` (n_replicas, L): the covariance over the
    replicas' histograms; or from ``covariance`` (L, L) of the weights, binned ``A C Aᵀ``; or
    none (NaN)."""
    import hist

    x = np.asarray(points, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    axes = _as_axes(bins, x)
    h = hist.Hist(*axes, storage=hist.storage.Weight())
    extents = tuple(ax.extent for ax in h.axes)
    n_flow = int(np.prod(extents))
    idx = _flat_index(h.axes, x)
    values = np.bincount(idx, weights=weights, minlength=n_flow + 1)[:n_flow]
    if replicas is not None:
        reps = np.array([np.bincount(idx, weights=w, minlength=n_flow + 1) for w in replicas])
        cov_flow = np.atleast_2d(np.cov(reps[:, :n_flow], rowvar=False))
    elif covariance is not None:
        rows = np.zeros((n_flow + 1, x.shape[0]))
        np.add.at(rows, idx, covariance)
        cov_flow = np.zeros((n_flow + 1, n_flow + 1))
        np.add.at(cov_flow.T, idx, rows.T)
        cov_flow = cov_flow[:n_flow, :n_flow]
    else:
        cov_flow = np.full((n_flow, n_flow), np.nan)
    view = h.view(flow=True)
    view.value = values.reshape(extents)
    view.variance = np.diag(cov_flow).reshape(extents)
    inner = np.zeros(extents, dtype=bool)
    inner[tuple(_in_range(ax) for ax in h.axes)] = True
    keep = inner.reshape(-1)
    return UnfoldedHist(
        hist=h,
        covariance=cov_flow[np.ix_(keep, keep)],
        axes=tuple(ax.name for ax in h.axes),
        errors=errors,
    )


def observable_values(gen, observable):
    """``observable(gen)`` as (L,) or (L, k) floats (default: the gen points themselves)."""
    values = gen if observable is None else np.asarray(observable(gen), dtype=np.float64)
    if values.ndim not in (1, 2) or values.shape[0] != gen.shape[0]:
        raise InvalidArgumentError(
            f"observable: must return one value or row per gen point ({gen.shape[0]}), "
            f"got shape {values.shape}"
        )
    return values


# ---------------------------------------------------------------------------------------------
# The estimators' hooks
# ---------------------------------------------------------------------------------------------
def fit_arguments(measured, gen, reco, measured_weight, response):
    """A measured histogram as weighted points at its bin centres, and a response histogram
    (:func:`response_from_hist`) as the explicit response between the centres of its gen and
    reco axes (``gen``/``reco`` default to them). Arrays pass through."""
    reco_axis = None
    response, measured = as_hist(response), as_hist(measured)
    if is_hist(response):
        reco_axis, gen_axis = response.axes
        gen = gen_axis.centers if gen is None else gen
        reco = reco_axis.centers if reco is None else reco
        response = response_from_hist(response)
    if is_hist(measured):
        if measured_weight is not None:
            raise InvalidArgumentError(
                "measured_weight: not used with a measured histogram (its bin contents are)"
            )
        measured_weight, _ = hist_counts(measured, "measured", reco_axis, "the response's reco")
        measured = measured.axes[0].centers
    for name, value in (("gen", gen), ("reco", reco)):
        if value is None:
            raise InvalidArgumentError(f"{name}: required unless response is a histogram")
    return measured, gen, reco, measured_weight, response


def richardson_lucy_arguments(response, measured, arrays):
    """The histogram inputs of :func:`~otinverse.unfolding.estimators.richardson_lucy` as its
    arrays: the response histogram as ``P(reco | gen)``; ``measured`` and ``background`` on its
    reco axis, ``prior`` on its gen axis (axes checked); ``data_err`` defaults to the square root
    of the measured histogram's variances. Returns (response, measured, arrays, gen axis)."""
    response, measured = as_hist(response), as_hist(measured)
    arrays = {name: as_hist(value) for name, value in arrays.items()}
    if not is_hist(response):
        raise InvalidArgumentError(
            "response: a measured histogram needs a response histogram with axes (reco, gen)"
        )
    reco_axis, gen_axis = response.axes
    matrix = response_from_hist(response)
    if is_hist(measured):
        measured, variances = hist_counts(measured, "measured", reco_axis, "the response's reco")
        if arrays.get("data_err") is None and variances is not None:
            arrays = {**arrays, "data_err": np.sqrt(variances)}
    for name, axis, axis_name in (
        ("background", reco_axis, "the response's reco"),
        ("prior", gen_axis, "the response's gen"),
    ):
        if is_hist(arrays.get(name)):
            arrays = {**arrays, name: hist_counts(arrays[name], name, axis, axis_name)[0]}
    return matrix, measured, arrays, gen_axis


def richardson_lucy_hist(result, gen_axis, cov_type):
    """The unfolded counts of the core's ``result`` as an :class:`UnfoldedHist` on ``gen_axis``,
    with the propagated covariance (statistical + response) when ``cov_type`` is set."""
    covariance = None if cov_type is None else result.stat_cov + result.sys_cov
    return unfolded_hist(
        np.asarray(gen_axis.centers),
        result.unfolded,
        gen_axis,
        covariance=covariance,
        errors="none" if covariance is None else "propagated",
    )
