"""Smoothed reconstruction efficiency of the MC's gen points.

With M detector samples per gen point, the per-point efficiency estimate is the fraction of
reconstructed samples, k/M: unbiased, but with M = 4 it only takes the values 0, ¼, ½, ¾, 1, and
the efficiency correction divides by it — E[1/ε̂] > 1/ε (Jensen), +14 % at ε = 0.7 and M = 4.
A physicist estimates the efficiency as a smooth function of the gen-level observable from all
MC events instead (an efficiency histogram or fit). :func:`smoothed_efficiency` does so by
local-linear kernel regression (Fan & Gijbels, *Local Polynomial Modelling*, §3) of the
reconstruction indicator over the gen points: the model is that every MC sample of gen point
x_k is reconstructed with probability ε(x_k), ε smooth on the scale of the bandwidth. The local
linear fit has no first-order bias at the edges of the gen range, where a kernel average
(Nadaraya–Watson) is pulled towards the interior.
"""

from __future__ import annotations

import numpy as np

from .._core import InvalidArgumentError

__all__ = ["smoothed_efficiency"]

_CHUNK = 128  # evaluation points per block: memory ~ 128·L·(d+1)² floats


def _local_linear(gen, y, n, bandwidth):
    """Local-linear fit of ``y`` (successes/trials) with trial counts ``n`` at every gen point."""
    L, d = gen.shape
    out = np.empty(L)
    for start in range(0, L, _CHUNK):
        centre = gen[start : start + _CHUNK]
        diff = (gen[None, :, :] - centre[:, None, :]) / bandwidth  # (c, L, d), in bandwidths
        w = n[None, :] * np.exp(-0.5 * (diff**2).sum(axis=2))
        z = np.concatenate([np.ones((*diff.shape[:2], 1)), diff], axis=2)
        a = np.einsum("cl,cli,clj->cij", w, z, z)
        # A small ridge on the slopes keeps isolated points solvable (then ≈ a kernel average).
        a[:, 1:, 1:] += 1e-3 * a[:, :1, :1] * np.eye(d)
        b = np.einsum("cl,cli,l->ci", w, z, y)
        out[start : start + _CHUNK] = np.linalg.solve(a, b[:, :, None])[:, 0, 0]
    return out


def smoothed_efficiency(gen, reconstructed, total, *, bandwidth=None):
    """Efficiency ε(x_k) of every gen point by local-linear kernel regression (module docs).

    ``gen`` (L, d) the gen points; ``reconstructed`` and ``total`` (L,) the MC weight of each
    point's reconstructed samples and of all its samples (event weights × sample weights).
    ``bandwidth``: the Gaussian kernel's width in units of each axis' standard deviation of the
    gen points (default Scott's rule, L^(−1/(d+4))). Returns ε (L,) clipped to [0, 1]; points
    with a reconstructed sample get at least a small positive efficiency (they are observed), and
    a fully reconstructed MC keeps ε = 1 exactly.
    """
    gen = np.asarray(gen, dtype=float).reshape(len(gen), -1)
    reconstructed = np.asarray(reconstructed, dtype=float)
    total = np.asarray(total, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(total > 0, reconstructed / total, 0.0)
    if np.all(reconstructed == total) or not (reconstructed > 0).any():
        return fraction  # nothing to smooth (the core rejects an MC with nothing reconstructed)
    L, d = gen.shape
    if bandwidth is None:
        bandwidth = L ** (-1.0 / (d + 4))
    elif not np.isfinite(bandwidth) or bandwidth <= 0:
        raise InvalidArgumentError(f"efficiency_bandwidth: must be positive, got {bandwidth!r}")
    scale = gen.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    eff = _local_linear(gen, fraction, total, bandwidth * scale)
    floor = 0.5 * fraction[reconstructed > 0].min()
    return np.where(reconstructed > 0, np.clip(eff, floor, 1.0), np.clip(eff, 0.0, 1.0))
