"""Images for the restoration, deconvolution-microscopy and accelerated-MRI experiments.

* :func:`load_micrograph`: the material micrographs of the WPP paper (Hertrich et al.);
* :func:`add_defects`: a line and a disk pasted into an image (the outlier patches of Mignon
  et al.'s robustness experiment);

* :func:`make_filaments`: fluorescence-like microtubule networks (smooth random curves and a few
  beads on a dark background), the 2-D analogue of the synthetic microtubules of Sim et al.,
  App. D.2.2;
* :func:`born_wolf_psf`: the in-focus Born–Wolf PSF (the Airy pattern, Sim et al., eq. 28 at
  ``r_z = 0``);
* :func:`make_ellipse_phantoms`: random ellipse phantoms in the style of Shepp–Logan.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
from scipy import ndimage, special
from sklearn.utils import Bunch, check_random_state

from .._validation import as_float_array, check_int, check_option, check_scalar_positive

__all__ = [
    "add_defects",
    "born_wolf_psf",
    "load_micrograph",
    "make_ellipse_phantoms",
    "make_filaments",
]


def born_wolf_psf(size: int, airy_radius: float) -> np.ndarray:
    """``size``×``size`` in-focus Born–Wolf PSF ``(2 J₁(v)/v)²`` with ``v = 3.8317 r / airy_radius``
    (Sim et al., eq. 28 at ``r_z = 0``: the Airy pattern).

    Parameters
    ----------
    size : int
        Side of the PSF in pixels.
    airy_radius : float
        Radius of the first dark ring in pixels (positive).

    Returns
    -------
    ndarray of shape (size, size)
        The PSF centred at ``(size − 1)/2``, normalised to sum 1.
    """
    size = check_int(size, "size", 1)
    airy_radius = check_scalar_positive(airy_radius, "airy_radius")
    t = np.arange(size) - (size - 1) / 2.0
    r = np.hypot(*np.meshgrid(t, t, indexing="ij"))
    v = special.jn_zeros(1, 1)[0] * r / airy_radius
    safe = np.where(v > 0, v, 1.0)
    psf = np.where(v > 0, (2.0 * special.j1(safe) / safe) ** 2, 1.0)
    return psf / psf.sum()


def _curve(rng, size):
    """Points of a smooth random curve (a random walk of the heading) crossing the image."""
    n_steps = int(rng.integers(size, 3 * size))
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.08, n_steps))
    start = rng.uniform(0, size, 2)
    steps = 0.5 * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    return start + np.cumsum(steps, axis=0)


def make_filaments(
    n_images: int, size: int = 64, *, n_filaments=(3, 7), n_beads=(0, 3), random_state=None
) -> np.ndarray:
    """Fluorescence-like microtubule images: smooth random curves and a few beads on a dark
    background (the 2-D analogue of the synthetic microtubules of Sim et al., App. D.2.2).

    Overlaps saturate as ``1 − e^{−s}``.

    Parameters
    ----------
    n_images : int
        Number of images.
    size : int, default=64
        Side of each image in pixels (at least 4).
    n_filaments : (int, int), default=(3, 7)
        Each image holds a uniform number in this inclusive range of curves (width ≈ 1.5 px,
        brightness 0.4–1).
    n_beads : (int, int), default=(0, 3)
        And a uniform number in this inclusive range of Gaussian beads (σ = 1 px).
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    ndarray of shape (n_images, size, size)
        The images, float64 in [0, 1].
    """
    n_images = check_int(n_images, "n_images", 1)
    size = check_int(size, "size", 4)
    rng = check_random_state(random_state)
    rng = np.random.default_rng(rng.randint(0, 2**31 - 1))
    images = np.empty((n_images, size, size))
    for i in range(n_images):
        acc = np.zeros((size, size))
        for _ in range(rng.integers(n_filaments[0], n_filaments[1] + 1)):
            pts = _curve(rng, size)
            inside = ((pts >= 0) & (pts < size - 1)).all(axis=1)
            r, c = np.floor(pts[inside]).astype(int).T
            fr, fc = (pts[inside] - np.floor(pts[inside])).T
            weight = rng.uniform(0.4, 1.0)
            for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)),
                              (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):  # fmt: skip
                np.add.at(acc, (r + dr, c + dc), weight * w)
        acc = 2.0 * ndimage.gaussian_filter(acc, 0.7)
        for _ in range(rng.integers(n_beads[0], n_beads[1] + 1)):
            cy, cx = rng.uniform(0, size, 2)
            yy, xx = np.mgrid[:size, :size]
            acc += rng.uniform(0.5, 1.5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0)
        images[i] = 1.0 - np.exp(-acc)
    return images


def make_ellipse_phantoms(n_images: int, size: int = 64, *, random_state=None) -> np.ndarray:
    """Random ellipse phantoms in the style of Shepp–Logan: a bright outer ellipse (the
    "skull"), a darker interior and 4–9 inner ellipses of random intensity, size and
    orientation, summed and clipped.

    Parameters
    ----------
    n_images : int
        Number of phantoms.
    size : int, default=64
        Side of each image in pixels (at least 4).
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    ndarray of shape (n_images, size, size)
        The phantoms, float64 in [0, 1], zero outside the outer ellipse.
    """
    n_images = check_int(n_images, "n_images", 1)
    size = check_int(size, "size", 4)
    rng = np.random.default_rng(check_random_state(random_state).randint(0, 2**31 - 1))
    t = (np.arange(size) - (size - 1) / 2.0) / (size / 2.0)
    yy, xx = np.meshgrid(t, t, indexing="ij")

    def ellipse(cy, cx, ay, ax, angle):
        c, s = np.cos(angle), np.sin(angle)
        u, v = (yy - cy) * c + (xx - cx) * s, -(yy - cy) * s + (xx - cx) * c
        return (u / ay) ** 2 + (v / ax) ** 2 <= 1.0

    images = np.empty((n_images, size, size))
    for i in range(n_images):
        ay, ax = rng.uniform(0.75, 0.92), rng.uniform(0.6, 0.8)
        angle = rng.uniform(-0.3, 0.3)
        img = 1.0 * ellipse(0, 0, ay, ax, angle)
        img -= rng.uniform(0.6, 0.8) * ellipse(0, 0, ay - 0.05, ax - 0.05, angle)
        for _ in range(rng.integers(4, 10)):
            cy, cx = rng.uniform(-0.5, 0.5, 2)
            axes = rng.uniform(0.04, 0.3, 2)
            img += rng.uniform(-0.2, 0.4) * ellipse(cy, cx, *axes, rng.uniform(0, np.pi))
        images[i] = np.clip(img, 0.0, 1.0) * ellipse(0, 0, ay, ax, angle)
    return images


def add_defects(
    image,
    *,
    line_width: int = 5,
    line_value: float = 0.0,
    disk_radius=None,
    disk_value: float = 1.0,
):
    """Pastes a horizontal line and a disk into a copy of ``image`` (the outlier patches of
    Mignon et al.'s robustness experiment).

    The line spans the width, centred at a third of the height; the disk is centred at two
    thirds of the height and half the width.

    Parameters
    ----------
    image : array-like of shape (h, w)
        The clean image.
    line_width : int, default=5
        Height of the line in pixels.
    line_value : float, default=0.0
        Grey level of the line (dark on images in [0, 1]).
    disk_radius : float or None, default=None
        Radius of the disk in pixels; ``None``: a tenth of the smaller side (at least 1).
    disk_value : float, default=1.0
        Grey level of the disk (bright on images in [0, 1]).

    Returns
    -------
    defective_image : ndarray of shape (h, w)
        The image with the defects, float64.
    defect_mask : ndarray of bool, shape (h, w)
        True on the pixels of the line and the disk.
    """
    image = as_float_array(image, "image", ndim=2)
    h, w = image.shape
    out = np.array(image, dtype=np.float64, copy=True)
    mask = np.zeros((h, w), dtype=bool)
    top = h // 3 - line_width // 2
    mask_line = np.zeros_like(mask)
    mask_line[max(top, 0) : max(top, 0) + line_width, :] = True
    out[mask_line] = line_value
    radius = max(min(h, w) // 10, 1) if disk_radius is None else disk_radius
    rr, cc = np.mgrid[:h, :w]
    mask_disk = (rr - 2 * h // 3) ** 2 + (cc - w // 2) ** 2 <= radius**2
    out[mask_disk] = disk_value
    return out, mask_line | mask_disk


_MICROGRAPHS = {
    "sic": ("wpp_img_hr.png", "wpp_img_learn.png", "SiC diamonds"),
    "sandstone": ("wpp_img_hr_FS.png", "wpp_img_learn_FS.png", "Fontainebleau sandstone"),
}


def load_micrograph(name="sic"):
    """A material micrograph pair of the WPP paper (Hertrich, Houdard, Redenbach, IEEE TCI 2022).

    The images come from the MIT-licensed WPP repository and credit the TOMCAT beamline (Swiss
    Light Source); see ``data/micrographs/PROVENANCE.md``, and cite Hertrich et al. when you use
    them. They are left out of the sdist and of wheels; an editable install from a clone of the
    repository (the README's setup) reads them from the source tree, elsewhere this function
    raises a ``FileNotFoundError`` that says so.

    Parameters
    ----------
    name : {"sic", "sandstone"}, default="sic"
        SiC diamonds or Fontainebleau sandstone.

    Returns
    -------
    sklearn.utils.Bunch
        ``image``: the 600×600 ground truth to degrade and restore; ``reference``: a different
        600×600 region of the same material, for :meth:`WPPRestorer.fit
        <otinverse.WPPRestorer.fit>`; both float64 grey levels in [0, 1] (the 8-bit PNGs divided
        by 255, as upstream); ``DESCR``: a description.
    """
    from matplotlib.image import imread

    check_option(name, "name", set(_MICROGRAPHS))
    hr, learn, title = _MICROGRAPHS[name]
    base = resources.files("otinverse") / "data" / "micrographs"
    images = []
    for filename in (hr, learn):
        entry = base / filename
        if not entry.is_file():
            raise FileNotFoundError(
                f"load_micrograph: {filename} is not installed. The micrographs are not shipped in "
                "wheels (licence caveat in data/micrographs/PROVENANCE.md); install otinverse from "
                "a clone of the repository (pip install -e .), which reads them from the source "
                "tree."
            )
        with resources.as_file(entry) as path:
            # 8-bit grey PNG → float32 k/255; round-trip through the integer to get float64 k/255.
            images.append(np.rint(imread(path).astype(np.float64) * 255.0) / 255.0)
    descr = (
        f"{title}: 2-D slices of a tomographic image (Hertrich et al. 2022, WPP); ground truth "
        f"{hr} and reference {learn}, 600×600, grey levels in [0, 1]."
    )
    return Bunch(image=images[0], reference=images[1], DESCR=descr)
