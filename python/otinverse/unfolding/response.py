"""A RooUnfold-style response, filled event by event (or array by array):

* ``fill(reco, gen, weight)``: an MC event reconstructed at ``reco`` with truth ``gen``;
* ``miss(gen, weight)``: an MC event not reconstructed — it adds to the truth spectrum and lowers
  the efficiency, and no measured bin;
* ``fake(reco, weight)``: a reconstructed event without a truth counterpart (fake, background) —
  it adds to the measured background only.

These are RooUnfold's ``Fill``, ``Miss`` and ``Fake``. The same events give both problems:
:meth:`Response.fit_kwargs` the unbinned MC of :meth:`OTUnfolder.fit
<otinverse.unfolding.estimators.OTUnfolder.fit>` (one (gen, reco) pair per event, a NaN reco for
a miss, ``gen_weight``, ``fakes``/``fake_weight``), and :meth:`Response.binned` the binned
response of :func:`~otinverse.unfolding.estimators.richardson_lucy` (``P(reco bin | gen bin)``
normalised by the truth including misses, so its column sums are the efficiencies, and the fakes
as background), also as a ``hist.Hist`` whose reco overflow holds the misses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._core import InvalidArgumentError
from .._validation import as_points
from .hep import to_numpy

__all__ = ["BinnedResponse", "Response"]


def _weights(weight, n, name):
    if weight is None:
        return np.ones(n)
    w = np.asarray(to_numpy(weight, name), dtype=np.float64)
    w = np.full(n, float(w)) if w.ndim == 0 else w
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
        raise InvalidArgumentError(
            f"{name}: expected {n} finite non-negative weights, got shape {w.shape}"
        )
    return w


class _Chunks:
    """Rows and weights appended chunk by chunk, concatenated when read."""

    def __init__(self):
        self.rows, self.weights = [], []

    def add(self, rows, weights):
        self.rows.append(rows)
        self.weights.append(weights)

    def arrays(self, d):
        if not self.rows:
            return np.empty((0, d)), np.empty(0)
        return np.vstack(self.rows), np.concatenate(self.weights)


@dataclass(frozen=True)
class _Events:
    """The filled events: reconstructed (``reco``, ``gen_fill``, ``w_fill``), missed
    (``gen_miss``, ``w_miss``) and fake (``fakes``, ``w_fake``); rows (n, d)."""

    reco: np.ndarray
    gen_fill: np.ndarray
    w_fill: np.ndarray
    gen_miss: np.ndarray
    w_miss: np.ndarray
    fakes: np.ndarray
    w_fake: np.ndarray


@dataclass(frozen=True)
class BinnedResponse:
    """A binned response (from :meth:`Response.binned`, or built directly), in summed MC
    weights.

    Events outside the reco bins count as misses (RooUnfold's default), outside the gen bins are
    dropped. Each parameter is an attribute of the same name.

    Parameters
    ----------
    reco_edges : ndarray of shape (n_reco + 1,)
        Edges of the detector-level bins.
    gen_edges : ndarray of shape (n_gen + 1,)
        Edges of the gen-level bins.
    counts : ndarray of shape (n_reco, n_gen)
        The filled events (reconstructed, with a truth), per (reco bin, gen bin).
    truth : ndarray of shape (n_gen,)
        Every MC event's truth: fills and misses.
    measured : ndarray of shape (n_reco,)
        Every reconstructed MC event: fills and fakes.
    fakes : ndarray of shape (n_reco,)
        The fakes (reconstructed without a truth).
    """

    reco_edges: np.ndarray
    gen_edges: np.ndarray
    counts: np.ndarray
    truth: np.ndarray
    measured: np.ndarray
    fakes: np.ndarray

    @property
    def matrix(self):
        """``P(reco bin e | gen bin c) = counts[e, c] / truth[c]`` (RooUnfold's ``Mresponse``)."""
        t = self.truth
        return np.divide(self.counts, t, out=np.zeros_like(self.counts), where=t > 0)

    @property
    def efficiencies(self):
        """The column sums of :attr:`matrix`: the reconstructed share of each gen bin."""
        return self.matrix.sum(axis=0)

    def background(self, measured_total):
        """The fakes scaled to a measured sample of ``measured_total`` events, as RooUnfold
        subtracts them: ``fakes · measured_total / Σ measured`` (the MC's fake fraction)."""
        return self.fakes * measured_total / self.measured.sum()

    def to_hist(self):
        """The response as a ``hist.Hist`` (axes ``reco``, ``gen``) of the summed weights, with
        the misses in the reco overflow, so that
        :func:`~otinverse.unfolding.hep.response_from_hist` gives back :attr:`matrix`."""
        import hist

        h = hist.Hist(
            hist.axis.Variable(self.reco_edges, name="reco"),
            hist.axis.Variable(self.gen_edges, name="gen"),
            storage=hist.storage.Double(),
        )
        view = h.view(flow=True)
        view[1:-1, 1:-1] = self.counts
        view[-1, 1:-1] = self.truth - self.counts.sum(axis=0)
        return h


class Response:
    """A response filled event by event like RooUnfold's ``RooUnfoldResponse`` (module docs).
    Every method takes one event (a number, or a (1, d) row for d > 1) or arrays of events
    (awkward, pandas or NumPy; (n,) or (n, d)), with an optional weight (a number or one per
    event, default 1)."""

    def __init__(self):
        self._fills = _Chunks()
        self._fill_gen = []
        self._misses = _Chunks()
        self._fakes = _Chunks()
        self._d_reco = self._d_gen = None

    def _check_dim(self, rows, attr, name):
        d = getattr(self, attr)
        if d is None:
            setattr(self, attr, rows.shape[1])
        elif rows.shape[1] != d:
            raise InvalidArgumentError(f"{name}: has dimension {rows.shape[1]}, earlier {d}")

    def _rows(self, x, attr, name):
        arr = np.asarray(to_numpy(x, name), dtype=np.float64)
        rows = as_points(np.atleast_1d(arr), name)
        self._check_dim(rows, attr, name)
        return rows

    def fill(self, reco, gen, weight=None):
        """A reconstructed MC event (or events): truth ``gen``, detector ``reco``. An event
        whose reco is ``None`` (awkward) or NaN was not reconstructed: it is a :meth:`miss`, so
        a whole MC sample goes in with one call."""
        arr = np.asarray(to_numpy(reco, "reco"), dtype=np.float64)
        arr = arr.reshape(-1, 1) if arr.ndim < 2 else arr
        missed = np.isnan(arr).all(axis=1)
        g = self._rows(gen, "_d_gen", "gen")
        if arr.shape[0] != g.shape[0]:
            raise InvalidArgumentError(f"reco: has {arr.shape[0]} events but gen has {g.shape[0]}")
        w = _weights(weight, g.shape[0], "weight")
        if missed.any():
            self.miss(g[missed], w[missed])
        if not missed.all():
            self._fills.add(self._rows(arr[~missed], "_d_reco", "reco"), w[~missed])
            self._fill_gen.append(g[~missed])
        return self

    def miss(self, gen, weight=None):
        """An MC event (or events) at truth ``gen`` that was not reconstructed."""
        g = self._rows(gen, "_d_gen", "gen")
        self._misses.add(g, _weights(weight, g.shape[0], "weight"))
        return self

    def fake(self, reco, weight=None):
        """A reconstructed event (or events) at ``reco`` without a truth counterpart."""
        r = self._rows(reco, "_d_reco", "reco")
        self._fakes.add(r, _weights(weight, r.shape[0], "weight"))
        return self

    def _events(self):
        if self._d_gen is None:
            raise InvalidArgumentError("Response: no MC event was filled or missed")
        reco, w_fill = self._fills.arrays(self._d_reco or 1)
        gen_miss, w_miss = self._misses.arrays(self._d_gen)
        fakes, w_fake = self._fakes.arrays(self._d_reco or 1)
        return _Events(
            reco=reco,
            gen_fill=np.vstack(self._fill_gen) if self._fill_gen else np.empty((0, self._d_gen)),
            w_fill=w_fill,
            gen_miss=gen_miss,
            w_miss=w_miss,
            fakes=fakes,
            w_fake=w_fake,
        )

    def fit_kwargs(self, fake_scale=1.0):
        """The MC as keyword arguments of ``fit`` (and of ``bootstrap``): ``gen`` (the fills,
        then the misses), ``reco`` (NaN rows for the misses), ``gen_weight``, and ``fakes`` with
        ``fake_weight`` = the fake weights × ``fake_scale`` (to the units of the measured sample,
        e.g. :meth:`BinnedResponse.background`'s factor ``Σ measured_weight / Σ MC measured``)."""
        e = self._events()
        d_reco = e.reco.shape[1]
        out = {
            "gen": np.vstack([e.gen_fill, e.gen_miss]),
            "reco": np.vstack([e.reco, np.full((e.gen_miss.shape[0], d_reco), np.nan)]),
            "gen_weight": np.concatenate([e.w_fill, e.w_miss]),
        }
        if d_reco == 1:
            out["reco"] = out["reco"][:, 0]
        if e.fakes.shape[0]:
            out["fakes"] = e.fakes
            out["fake_weight"] = e.w_fake * float(fake_scale)
        return out

    @property
    def measured_total(self):
        """The MC's reconstructed weight: fills and fakes."""
        e = self._events()
        return float(e.w_fill.sum() + e.w_fake.sum())

    def binned(self, reco_bins, gen_bins):
        """The :class:`BinnedResponse` in ``reco_bins`` and ``gen_bins`` (edges, 1-D events)."""
        e = self._events()
        if e.reco.shape[1] != 1 or e.gen_fill.shape[1] != 1:
            raise InvalidArgumentError("binned: only for 1-D reco and gen")
        re = _edges(reco_bins, "reco_bins")
        ge = _edges(gen_bins, "gen_bins")
        reco, gen_fill = e.reco[:, 0], e.gen_fill[:, 0]
        r_bin, g_bin = _bin_index(reco, re), _bin_index(gen_fill, ge)
        both = (r_bin >= 0) & (g_bin >= 0)
        counts = np.zeros((re.size - 1, ge.size - 1))
        np.add.at(counts, (r_bin[both], g_bin[both]), e.w_fill[both])
        truth = _histogram(gen_fill, e.w_fill, ge) + _histogram(e.gen_miss[:, 0], e.w_miss, ge)
        fake_counts = _histogram(e.fakes[:, 0], e.w_fake, re)
        measured = _histogram(reco, e.w_fill, re) + fake_counts
        return BinnedResponse(re, ge, counts, truth, measured, fake_counts)


def _edges(bins, name):
    edges = np.asarray(getattr(bins, "edges", bins), dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not (np.diff(edges) > 0).all():
        raise InvalidArgumentError(f"{name}: bin edges must increase, got {bins!r}")
    return edges


def _bin_index(x, edges):
    """Bins ``[e_i, e_{i+1})`` as ``hist`` has them; −1 outside (and for NaN)."""
    idx = np.searchsorted(edges, x, side="right") - 1
    idx[~((x >= edges[0]) & (x < edges[-1]))] = -1
    return idx


def _histogram(x, weights, edges):
    idx = _bin_index(x, edges)
    inside = idx >= 0
    return np.bincount(idx[inside], weights=weights[inside], minlength=edges.size - 1)
