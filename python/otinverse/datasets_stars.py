"""Synthetic LEGUS-like star patches with known labels (issue 4), for :class:`StarClusterClassifier`.

Kept self-contained so it can be merged into ``otinverse.datasets`` as is.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from ._core import InvalidArgumentError

__all__ = ["make_star_patches"]

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
    """Patches of shape (n_samples, bands, size, size) in detector counts, and labels.

    Label 1 ("cluster"): one compact extended source — a Gaussian of width drawn from
    ``cluster_sigma`` (px) convolved with the PSF — near the centre. Label 0: ``n_stars`` (inclusive
    range) point sources (PSF only, Gaussian of FWHM ``fwhm`` px) at least ``min_separation`` px
    apart. Each band rescales every source's flux by a random colour factor in [0.5, 1.5]; then a
    flat sky background is added, Poisson noise drawn, Gaussian read noise added, and counts
    clipped at zero (a detector reports non-negative counts).

    Returns
    -------
    X : ndarray (n_samples, bands, size, size)
    y : ndarray (n_samples,) of {0, 1}
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
                        f"min_separation: cannot place {k} stars {min_separation} px apart in a {size} px patch"
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
            for (cy, cx, sig, f), col in zip(sources, colours[b]):
                img += f * col * _gaussian(size, cy, cx, sig)
            img = rng.poisson(img).astype(float) + rng.normal(0.0, read_noise, size=img.shape)
            X[i, b] = np.clip(img, 0.0, None)
    return X, y
