"""Synthetic star patches with known labels, for :class:`StarClusterClassifier`.

* :func:`make_star_groups`: the benchmark of what super-resolution is for — isolated stars
  against blended groups of 2–5 point sources below and around the resolution limit.
* :func:`make_star_patches`: LEGUS-like compact extended sources against well-separated stars.
* :func:`star_psf`: the Gaussian or Moffat PSF both draw their sources with.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import Bunch, check_random_state

from .._core import InvalidArgumentError

__all__ = ["make_star_groups", "make_star_patches", "star_psf"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _gaussian(size, cy, cx, sigma):
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * sigma**2))
    return g / g.sum()


def make_star_patches(
    n_samples=100,
    bands=5,
    size=32,
    *,
    fwhm=2.0,
    cluster_fraction=0.5,
    cluster_sigma=(1.2, 2.0),
    n_stars=(2, 4),
    min_separation=5.0,
    flux=(2000.0, 8000.0),
    sky=20.0,
    read_noise=3.0,
    random_state=None,
):
    """LEGUS-like multi-band patches in detector counts: compact extended sources (label 1,
    "cluster") against well-separated stars (label 0).

    Label 1: one compact extended source — a Gaussian of width drawn from ``cluster_sigma``
    convolved with the PSF — within 2 px of the centre along each axis. Label 0: point sources
    (the PSF only) at least ``min_separation`` apart. Each band rescales every source's flux by
    a random colour factor in [0.5, 1.5]; then a flat sky background is added, Poisson noise
    drawn, Gaussian read noise added, and counts clipped at zero (a detector reports
    non-negative counts).

    Parameters
    ----------
    n_samples : int, default=100
        Number of patches.
    bands : int, default=5
        Photometric bands per patch.
    size : int, default=32
        Side of a patch in pixels (at least 8).
    fwhm : float, default=2.0
        Full width at half maximum of the Gaussian PSF, in pixels.
    cluster_fraction : float, default=0.5
        Probability of label 1, in [0, 1].
    cluster_sigma : (float, float), default=(1.2, 2.0)
        Range of the extended source's intrinsic Gaussian width, in pixels.
    n_stars : (int, int), default=(2, 4)
        Inclusive range of the number of stars of a label-0 patch.
    min_separation : float, default=5.0
        Smallest distance between two stars, in pixels.
    flux : (float, float), default=(2000.0, 8000.0)
        Range of a patch's total flux in counts (shared among its stars, each ×0.7–1.3).
    sky : float, default=20.0
        Sky background in counts per pixel.
    read_noise : float, default=3.0
        Standard deviation of the Gaussian read noise, in counts.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    X : ndarray of shape (n_samples, bands, size, size)
        The patches, in counts.
    y : ndarray of shape (n_samples,)
        The labels, 0 (stars) or 1 (cluster).
    """
    for name, v, lo in (("n_samples", n_samples, 1), ("bands", bands, 1), ("size", size, 8)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise InvalidArgumentError(f"{name}: must be an integer >= {lo}, got {v!r}")
    if not (0.0 <= cluster_fraction <= 1.0):
        raise InvalidArgumentError(f"cluster_fraction: must lie in [0, 1], got {cluster_fraction}")
    if not fwhm > 0:
        raise InvalidArgumentError(f"fwhm: must be positive, got {fwhm}")
    rng = check_random_state(random_state)
    psf = fwhm * _FWHM_TO_SIGMA
    X = np.empty((n_samples, bands, size, size))
    y = (rng.random_sample(n_samples) < cluster_fraction).astype(int)
    c = (size - 1) / 2.0
    for i in range(n_samples):
        sources = []  # (cy, cx, sigma, flux)
        if y[i] == 1:
            s = rng.uniform(*cluster_sigma)
            cy, cx = c + rng.uniform(-2, 2, size=2)
            sources.append((cy, cx, np.hypot(psf, s), rng.uniform(*flux)))
        else:
            k = rng.randint(n_stars[0], n_stars[1] + 1)
            # Rejection sampling inside the patch (3 px margin); restart when the stars so far
            # leave no room, so impossible settings fail loudly instead of looping forever.
            half = size / 2 - 3
            pts, tries = [], 0
            while len(pts) < k:
                tries += 1
                if tries > 10_000:
                    raise InvalidArgumentError(
                        f"min_separation: cannot place {k} stars {min_separation} px apart "
                        f"in a {size} px patch"
                    )
                if tries % 200 == 0:
                    pts = []
                p = c + rng.uniform(-half, half, size=2)
                if all(np.hypot(*(p - q)) >= min_separation for q in pts):
                    pts.append(p)
            for p in pts:
                sources.append((p[0], p[1], psf, rng.uniform(*flux) / k * rng.uniform(0.7, 1.3)))
        colours = rng.uniform(0.5, 1.5, size=(bands, len(sources)))
        for b in range(bands):
            img = np.full((size, size), float(sky))
            for (cy, cx, sig, f), col in zip(sources, colours[b], strict=True):
                img += f * col * _gaussian(size, cy, cx, sig)
            img = rng.poisson(img).astype(float) + rng.normal(0.0, read_noise, size=img.shape)
            X[i, b] = np.clip(img, 0.0, None)
    return X, y


def star_psf(kind, fwhm, size, cy=None, cx=None, *, beta=3.0):
    """A normalised point-spread function sampled at the pixel centres of a ``size × size`` patch.

    Parameters
    ----------
    kind : {"gaussian", "moffat"}
        ``"gaussian"``: ``exp(−r²/2σ²)`` with ``σ = fwhm/(2√(2 ln 2))``; ``"moffat"``:
        ``(1 + r²/α²)^{−β}`` with ``α = fwhm/(2√(2^{1/β} − 1))`` (Moffat 1969; the wings of
        ground- and space-based stellar profiles).
    fwhm : float
        Full width at half maximum, in pixels (both kinds have it).
    size : int
        Side of the patch in pixels.
    cy, cx : float or None, default=None
        Centre of the PSF in pixel coordinates (row, column); ``None``: the patch centre
        ``(size − 1)/2``.
    beta : float, default=3.0
        The Moffat exponent β (unused for ``"gaussian"``).

    Returns
    -------
    ndarray of shape (size, size)
        The PSF, summing to 1.
    """
    if kind not in ("gaussian", "moffat"):
        raise InvalidArgumentError(f"psf: must be 'gaussian' or 'moffat', got {kind!r}")
    c = (size - 1) / 2.0
    cy = c if cy is None else cy
    cx = c if cx is None else cx
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    r2 = (yy - cy) ** 2 + (xx - cx) ** 2
    if kind == "gaussian":
        img = np.exp(-r2 / (2.0 * (fwhm * _FWHM_TO_SIGMA) ** 2))
    else:
        alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        img = (1.0 + r2 / alpha**2) ** (-beta)
    return img / img.sum()


def _check_range(name, pair, low, high):
    lo, hi = (float(v) for v in pair)
    if not (low <= lo <= hi <= high):
        raise InvalidArgumentError(
            f"{name}: expected low <= high within [{low}, {high}], got {pair}"
        )
    return lo, hi


def _group_positions(rng, k, centre, separation, fwhm):
    """``k`` positions: the first within 1 px of the centre, each further one at a separation
    drawn from ``separation`` (in FWHM) from a random earlier source, at a random angle; returns
    the positions and the smallest pairwise separation (in FWHM)."""
    pts = [centre + rng.uniform(-1.0, 1.0, size=2)]
    tries = 0
    while len(pts) < k:
        tries += 1
        if tries > 10_000:
            raise InvalidArgumentError(
                f"separation: cannot place {k} sources {separation} FWHM apart inside the patch"
            )
        d = rng.uniform(*separation) * fwhm
        t = rng.uniform(0.0, 2.0 * np.pi)
        p = pts[rng.randint(len(pts))] + d * np.array([np.sin(t), np.cos(t)])
        # A source closer than the smallest allowed separation to another one would make the
        # recorded separation leave the range asked for, and one near the edge would be lost.
        inside = np.all(np.abs(p - centre) <= centre - 2.0)
        if inside and all(np.hypot(*(p - q)) >= separation[0] * fwhm for q in pts):
            pts.append(p)
    pts = np.array(pts)
    gaps = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
    return pts, float(gaps[np.triu_indices(k, 1)].min() / fwhm)


def make_star_groups(
    n_samples=500,
    *,
    bands=3,
    size=32,
    psf=("gaussian", "moffat"),
    fwhm=2.5,
    moffat_beta=3.0,
    cluster_fraction=0.5,
    n_sources=(2, 5),
    separation=(0.5, 2.0),
    flux_ratio=(0.2, 1.0),
    flux=(2000.0, 8000.0),
    colour_scatter=0.3,
    sky=20.0,
    read_noise=3.0,
    random_state=None,
):
    """Isolated stars (label 0, "single") against blended groups of point sources (label 1,
    "cluster"), the case super-resolution is for.

    Each patch holds one group near the centre. A single is one point source; a cluster has
    several, each placed at a drawn separation from an earlier one. The total flux is drawn
    from ``flux`` for both classes (so brightness alone does not tell them apart). Every source
    gets a per-band colour factor; the PSF of a patch is drawn from ``psf`` (see
    :func:`star_psf`). Then a flat sky is added, Poisson noise drawn, Gaussian read noise added,
    and counts clipped at zero.

    Regimes at the default noise (peak signal-to-noise ≳ 30 per band): a pair further apart than
    ≈ 1.2 FWHM with flux ratio ≳ 0.5 shows two maxima in the raw image (easy: thresholding sees
    them); between ≈ 0.8 and 1.2 FWHM, or with a faint companion (ratio 0.2–0.5), the blend has
    one maximum and only its shape (elongation, width) differs from a single star (hard: this is
    where deconvolution or sparsification can help); below ≈ 0.5–0.7 FWHM the shape difference
    is comparable to the photon noise (practically impossible without the exact PSF). Two equal
    Gaussians show a saddle only beyond 2σ ≈ 0.85 FWHM.

    Split with ``sklearn.model_selection.train_test_split(..., stratify=target, random_state=s)``.

    Parameters
    ----------
    n_samples : int, default=500
        Number of patches.
    bands : int, default=3
        Photometric bands per patch.
    size : int, default=32
        Side of a patch in pixels (at least 8).
    psf : str or sequence of str, default=("gaussian", "moffat")
        The PSF kinds (:func:`star_psf`) a patch's PSF is drawn from, uniformly.
    fwhm : float, default=2.5
        Full width at half maximum of the PSF, in pixels.
    moffat_beta : float, default=3.0
        Exponent of the Moffat PSF.
    cluster_fraction : float, default=0.5
        Probability of label 1, in [0, 1].
    n_sources : (int, int), default=(2, 5)
        Inclusive range of the number of sources of a cluster (within [2, 50]).
    separation : (float, float), default=(0.5, 2.0)
        Range of the distance of a new source from an earlier one, in units of the FWHM.
    flux_ratio : (float, float), default=(0.2, 1.0)
        Range of a companion's flux relative to the first source, within [0.001, 1].
    flux : (float, float), default=(2000.0, 8000.0)
        Range of a patch's total flux, in counts.
    colour_scatter : float, default=0.3
        σ of the per-band colour factor ``exp(N(0, σ²))`` of every source.
    sky : float, default=20.0
        Sky background in counts per pixel.
    read_noise : float, default=3.0
        Standard deviation of the Gaussian read noise, in counts.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    sklearn.utils.Bunch
        ``data`` (n_samples, bands, size, size) in counts, ``target`` (n_samples,) in {0, 1},
        ``target_names`` ("single", "cluster"), ``n_sources``, ``separation`` (smallest
        pairwise separation in FWHM; NaN for singles), ``flux_ratio`` (faintest / brightest;
        NaN for singles), ``psf`` (the PSF kind of each patch), ``positions`` (list of (k, 2)
        arrays, (y, x) px), ``fwhm`` and ``moffat_beta``.
    """
    for name, v, lo in (("n_samples", n_samples, 1), ("bands", bands, 1), ("size", size, 8)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise InvalidArgumentError(f"{name}: must be an integer >= {lo}, got {v!r}")
    psf = (psf,) if isinstance(psf, str) else tuple(psf)
    for kind in psf:
        star_psf(kind, 1.0, 8)  # validates the name
    if not (0.0 <= cluster_fraction <= 1.0):
        raise InvalidArgumentError(f"cluster_fraction: must lie in [0, 1], got {cluster_fraction}")
    if not fwhm > 0:
        raise InvalidArgumentError(f"fwhm: must be positive, got {fwhm}")
    k_lo, k_hi = (int(v) for v in _check_range("n_sources", n_sources, 2, 50))
    separation = _check_range("separation", separation, 1e-3, size / (2.0 * fwhm))
    flux_ratio = _check_range("flux_ratio", flux_ratio, 1e-3, 1.0)
    flux = _check_range("flux", flux, 0.0, np.inf)
    rng = check_random_state(random_state)
    y = (rng.random_sample(n_samples) < cluster_fraction).astype(int)
    X = np.empty((n_samples, bands, size, size))
    info = {"n_sources": [], "separation": [], "flux_ratio": [], "psf": [], "positions": []}
    centre = np.full(2, (size - 1) / 2.0)
    for i in range(n_samples):
        kind = psf[rng.randint(len(psf))]
        if y[i]:
            k = rng.randint(k_lo, k_hi + 1)
            pts, sep = _group_positions(rng, k, centre, separation, fwhm)
            rel = np.concatenate([[1.0], rng.uniform(*flux_ratio, size=k - 1)])
        else:
            k, sep, rel = 1, np.nan, np.ones(1)
            pts = centre[None] + rng.uniform(-1.0, 1.0, size=(1, 2))
        fluxes = rng.uniform(*flux) * rel / rel.sum()
        colours = np.exp(rng.normal(0.0, colour_scatter, size=(bands, k)))
        images = [star_psf(kind, fwhm, size, *p, beta=moffat_beta) for p in pts]
        for b in range(bands):
            img = sky + sum(f * c * im for f, c, im in zip(fluxes, colours[b], images, strict=True))
            img = rng.poisson(img).astype(float) + rng.normal(0.0, read_noise, size=img.shape)
            X[i, b] = np.clip(img, 0.0, None)
        info["n_sources"].append(k)
        info["separation"].append(sep)
        info["flux_ratio"].append(rel.min() if k > 1 else np.nan)
        info["psf"].append(kind)
        info["positions"].append(pts)
    return Bunch(
        data=X,
        target=y,
        target_names=np.array(["single", "cluster"]),
        n_sources=np.array(info["n_sources"]),
        separation=np.array(info["separation"]),
        flux_ratio=np.array(info["flux_ratio"]),
        psf=np.array(info["psf"]),
        positions=info["positions"],
        fwhm=float(fwhm),
        moffat_beta=float(moffat_beta),
    )
