"""The denoising experiment of Mignon et al. (§II, Fig. 1): a Gaussian texture and an imperfect
patch model 0.8 N₁ + 0.2 N₂, N₁ the texture's own patch distribution and N₂ patches with a
horizontal edge. Used by ``notebooks/suot_denoising.ipynb`` with :class:`~otinverse.WPPRestorer`
(``forward_model="identity"``, ``fit(reference_patches=...)``).
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import Bunch, check_random_state

from .. import _core
from .._core import InvalidArgumentError
from .._validation import check_int, check_real, check_scalar_positive

__all__ = ["make_gaussian_texture", "make_texture_denoising"]


def make_gaussian_texture(shape, *, correlation=1.5, std=0.12, mean=0.5, random_state=None):
    """A periodic isotropic Gaussian texture (the random-phase model of Galerne et al., ref. [22]
    of Mignon et al.): white noise filtered by a Gaussian transfer function ``exp(−2π² c² |k|²)``
    (c = ``correlation`` in pixels), scaled to the given mean and (ensemble) standard deviation.

    Every p×p patch of every realisation follows the same Gaussian law N₁, so patches of an
    independent realisation are samples of the clean image's patch distribution.

    Parameters
    ----------
    shape : int or (int, int)
        ``(height, width)`` of the image; an int gives a square.
    correlation : float, default=1.5
        Correlation length ``c`` in pixels (positive).
    std : float, default=0.12
        Ensemble standard deviation of a pixel (positive).
    mean : float, default=0.5
        Mean grey level.
    random_state : int, RandomState instance or None, default=None
        Seeds the white noise.

    Returns
    -------
    ndarray of shape (height, width)
        The texture, float64 (not clipped).
    """
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (int(shape), int(shape))
    shape = tuple(shape)
    if len(shape) != 2:
        raise InvalidArgumentError(f"shape: expected (height, width), got {shape!r}")
    shape = (check_int(shape[0], "shape", 1), check_int(shape[1], "shape", 1))
    correlation = check_scalar_positive(correlation, "correlation")
    std = check_scalar_positive(std, "std")
    mean = check_real(mean, "mean")
    rng = check_random_state(random_state)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    transfer = np.exp(-2.0 * (np.pi * correlation) ** 2 * (kx**2 + ky**2))
    field = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal(shape)) * transfer))
    # Ensemble standard deviation of the filtered white noise: sqrt(mean |transfer|²).
    return float(mean) + std * field / np.sqrt(np.mean(transfer**2))


def make_texture_denoising(
    size=64,
    patch_size=8,
    n_reference_patches=4000,
    *,
    outlier_fraction=0.2,
    edge_contrast=0.25,
    correlation=1.5,
    std=0.12,
    mean=0.5,
    random_state=None,
):
    """The clean image and the corrupted patch model of Mignon et al., Fig. 1.

    Parameters
    ----------
    size : int, default=64
        Side of the clean image in pixels.
    patch_size : int, default=8
        Side ``p`` of the square patches (at most ``size``).
    n_reference_patches : int, default=4000
        Number of reference patches (at most the number of patches of a 160×160 image).
    outlier_fraction : float, default=0.2
        Share of the reference patches drawn from N₂, in [0, 1).
    edge_contrast : float, default=0.25
        The N₂ patches' edge: ``mean − edge_contrast`` above the middle row,
        ``mean + edge_contrast`` below (positive).
    correlation : float, default=1.5
        Correlation length of the texture in pixels (:func:`make_gaussian_texture`).
    std : float, default=0.12
        Standard deviation of the texture.
    mean : float, default=0.5
        Mean grey level of the texture.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    sklearn.utils.Bunch
        ``image``: the ``size``×``size`` Gaussian texture; ``reference_patches``:
        ``(n_reference_patches, p²)`` flattened patches, a fraction ``1 − outlier_fraction``
        from N₁ (patches of an independent 160×160 realisation) and the rest from N₂ (the edge
        plus N₁'s fluctuations, i.e. a Gaussian with N₁'s covariance around an edge);
        ``is_outlier``: which reference patches come from N₂ (the last ones); ``patch_size``.
    """
    size = check_int(size, "size", 2)
    patch_size = check_int(patch_size, "patch_size", 2)
    if patch_size > size:
        raise InvalidArgumentError(f"patch_size: {patch_size} exceeds size={size}")
    n_reference_patches = check_int(n_reference_patches, "n_reference_patches", 1)
    if (
        isinstance(outlier_fraction, bool)
        or not isinstance(outlier_fraction, numbers.Real)
        or not (0 <= outlier_fraction < 1)
    ):
        raise InvalidArgumentError(
            f"outlier_fraction: must lie in [0, 1), got {outlier_fraction!r}"
        )
    edge_contrast = check_scalar_positive(edge_contrast, "edge_contrast")
    rng = check_random_state(random_state)
    texture = dict(correlation=correlation, std=std, mean=mean)
    image = make_gaussian_texture((size, size), random_state=rng, **texture)
    pool = _core.extract_patches(
        make_gaussian_texture((160, 160), random_state=rng, **texture), patch_size
    )
    if n_reference_patches > pool.shape[0]:
        raise InvalidArgumentError(
            f"n_reference_patches: at most {pool.shape[0]}, got {n_reference_patches}"
        )
    n_out = int(np.rint(outlier_fraction * n_reference_patches))
    n_in = n_reference_patches - n_out
    inliers = pool[rng.choice(pool.shape[0], n_in, replace=False)]
    edge = np.where(np.arange(patch_size) < patch_size // 2, -edge_contrast, edge_contrast)
    edge = np.repeat(
        edge, patch_size
    )  # row-major: the top half of the rows dark, the bottom bright
    outliers = edge[None, :] + pool[rng.choice(pool.shape[0], n_out, replace=False)]
    is_outlier = np.zeros(n_reference_patches, dtype=bool)
    is_outlier[n_in:] = True
    return Bunch(
        image=image,
        reference_patches=np.ascontiguousarray(np.vstack([inliers, outliers])),
        is_outlier=is_outlier,
        patch_size=patch_size,
    )
