"""Known linear forward operators ``H`` of imaging inverse problems, with their adjoints.

Each operator maps an image of ``input_shape`` to a measurement of ``output_shape`` and is written
once against an array namespace ``xp`` (``numpy`` or ``jax.numpy``): :meth:`LinearOperator.apply`
and :meth:`LinearOperator.adjoint` are the validated NumPy (float64) entry points, and the learning
extra (``otinverse.learn``) differentiates through the very same ``_forward``/``_adjoint`` code
with ``jax.numpy``. All operators act on the last axes and broadcast over leading (batch) axes.

* :class:`ConvolutionOperator`: ``h * x`` with a known PSF ``h`` (deconvolution microscopy, Sim
  et al., eq. 25), zero ("same" linear convolution) or periodic boundary.
* :class:`BlurSubsampleOperator`: valid correlation with a kernel and stride ``s``, the
  super-resolution model ``S H`` of :class:`otinverse.WPPRestorer` (``from_scale_factor``).
* :class:`CartesianMaskOperator`: ``F⁻¹ P_Ω F x`` with ``F`` the unitary 2-D DFT and ``P_Ω`` a
  mask of phase-encoding lines (accelerated MRI, Sim et al., eq. 23); the complex result is
  returned as a trailing axis of length 2 (real, imaginary).

Convolutions use FFTs so that the same code runs on both namespaces; the dot-product test
``⟨H x, y⟩ = ⟨x, Hᵀ y⟩`` holds to rounding (tests check 1e-10 in float64).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla
from sklearn.utils import check_random_state

from .._core import InvalidArgumentError
from .._validation import as_float_array, check_int, check_option, check_real

__all__ = [
    "BlurSubsampleOperator",
    "CartesianMaskOperator",
    "ConvolutionOperator",
    "LinearOperator",
    "cartesian_line_mask",
    "gaussian_kernel",
]


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """Normalised ``size``×``size`` Gaussian centred at ``(size − 1)/2``.

    Parameters
    ----------
    size : int
        Side of the kernel in pixels.
    sigma : float
        Standard deviation in pixels.

    Returns
    -------
    ndarray of shape (size, size)
        ``exp(−((i − c)² + (j − c)²) / 2σ²)`` with ``c = (size − 1)/2``, divided by its sum.
    """
    t = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(t**2) / (2.0 * sigma**2))
    k = np.outer(g, g)
    return k / k.sum()


def _check_shape(shape, name: str, minimum: int = 1) -> tuple[int, int]:
    try:
        dims = tuple(shape)
    except TypeError:
        raise InvalidArgumentError(
            f"{name}: expected a (height, width) pair, got {shape!r}"
        ) from None
    if len(dims) != 2:
        raise InvalidArgumentError(f"{name}: expected a (height, width) pair, got {shape!r}")
    return tuple(check_int(n, name, minimum) for n in dims)


class LinearOperator:
    """A known linear map ``H`` from images of ``input_shape`` to measurements of ``output_shape``.

    Subclasses implement ``_forward(x, xp)`` and ``_adjoint(y, xp)`` for arrays whose last axes
    have the input (resp. output) shape, with ``xp`` the array namespace.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def _forward(self, x, xp):
        raise NotImplementedError

    def _adjoint(self, y, xp):
        raise NotImplementedError

    def with_input_shape(self, shape) -> LinearOperator:
        """The same operator for images of another ``shape`` (used for training on patches)."""
        raise InvalidArgumentError(
            f"shape: {type(self).__name__} is defined for {self.input_shape} images only"
        )

    def _check(self, arr, name: str, shape) -> np.ndarray:
        arr = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
        if arr.ndim < len(shape) or tuple(arr.shape[arr.ndim - len(shape) :]) != tuple(shape):
            raise InvalidArgumentError(
                f"{name}: expected trailing shape {tuple(shape)} for this "
                f"{type(self).__name__}, got shape {arr.shape}"
            )
        return as_float_array(arr, name, ndim=arr.ndim)

    def apply(self, x) -> np.ndarray:
        """``H x`` for an image (or a stack of images) of ``input_shape``, in float64."""
        return np.asarray(self._forward(self._check(x, "x", self.input_shape), np), np.float64)

    def adjoint(self, y) -> np.ndarray:
        """``Hᵀ y`` for a measurement (or a stack) of ``output_shape``, in float64."""
        return np.asarray(self._adjoint(self._check(y, "y", self.output_shape), np), np.float64)

    def as_scipy(self) -> spla.LinearOperator:
        """``H`` on flattened vectors, as a :class:`scipy.sparse.linalg.LinearOperator`."""
        n_in, n_out = int(np.prod(self.input_shape)), int(np.prod(self.output_shape))
        return spla.LinearOperator(
            (n_out, n_in),
            matvec=lambda v: self._forward(v.reshape(self.input_shape), np).ravel(),
            rmatvec=lambda v: self._adjoint(v.reshape(self.output_shape), np).ravel(),
            dtype=np.float64,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(input_shape={self.input_shape})"


def _pad_last2(a, before, after, xp):
    width = [(0, 0)] * (a.ndim - 2) + [(before[0], after[0]), (before[1], after[1])]
    return xp.pad(a, width)


class ConvolutionOperator(LinearOperator):
    """``y = h * x``: 2-D convolution with a known PSF ``h`` (Sim et al., eq. 25).

    Parameters
    ----------
    psf : array of shape (kh, kw)
        The point-spread function, used as given (not normalised).
    image_shape : (int, int)
        Shape of ``x`` and ``y``.
    boundary : {"zero", "periodic"}, default="zero"
        ``"zero"``: the central part of the full linear convolution (zero padding outside the
        image, ``scipy.signal.convolve(x, h, mode="same")``, which is also the model of
        ``skimage.restoration.richardson_lucy``); ``"periodic"``: circular convolution with the
        PSF centre at index ``(k − 1)//2``.
    """

    def __init__(self, psf, image_shape, boundary: str = "zero"):
        self.psf = np.array(as_float_array(psf, "psf", ndim=2), dtype=np.float64)
        self.boundary = check_option(boundary, "boundary", ("zero", "periodic"))
        self.input_shape = self.output_shape = _check_shape(image_shape, "image_shape")
        k = self.psf.shape
        if any(kk > n for kk, n in zip(k, self.input_shape, strict=True)):
            raise InvalidArgumentError(
                f"psf: a {k[0]}×{k[1]} PSF does not fit {self.input_shape} images"
            )
        self._centre = tuple((kk - 1) // 2 for kk in k)
        if self.boundary == "zero":
            self._fft_shape = tuple(n + kk - 1 for n, kk in zip(self.input_shape, k, strict=True))
            self._transfer = np.fft.rfft2(self.psf, s=self._fft_shape)
        else:
            self._fft_shape = self.input_shape
            rolled = np.roll(
                np.pad(self.psf, [(0, n - kk) for n, kk in zip(self._fft_shape, k, strict=True)]),
                [-c for c in self._centre],
                axis=(0, 1),
            )
            self._transfer = np.fft.rfft2(rolled)

    def with_input_shape(self, shape) -> ConvolutionOperator:
        return ConvolutionOperator(self.psf, shape, self.boundary)

    @property
    def margin(self) -> tuple[int, int]:
        """Pixels at each border whose value depends on what lies outside the image."""
        return tuple(kk // 2 for kk in self.psf.shape)

    def _filter(self, a, transfer, xp):
        return xp.fft.irfft2(xp.fft.rfft2(a, s=self._fft_shape) * transfer, s=self._fft_shape)

    def _forward(self, x, xp):
        if self.boundary == "periodic":
            return self._filter(x, xp.asarray(self._transfer), xp)
        full = self._filter(x, xp.asarray(self._transfer), xp)
        (c0, c1), (n0, n1) = self._centre, self.input_shape
        return full[..., c0 : c0 + n0, c1 : c1 + n1]

    def _adjoint(self, y, xp):
        conj = xp.asarray(np.conj(self._transfer))
        if self.boundary == "periodic":
            return self._filter(y, conj, xp)
        (c0, c1), (n0, n1) = self._centre, self.input_shape
        f0, f1 = self._fft_shape
        padded = _pad_last2(y, (c0, c1), (f0 - n0 - c0, f1 - n1 - c1), xp)
        return self._filter(padded, conj, xp)[..., :n0, :n1]

    def __repr__(self) -> str:
        return (
            f"ConvolutionOperator(psf={self.psf.shape[0]}×{self.psf.shape[1]}, "
            f"image_shape={self.input_shape}, boundary={self.boundary!r})"
        )


class BlurSubsampleOperator(LinearOperator):
    """``y[r, c] = Σ_{u,v} k[u, v] x[s·r + u, s·c + v]``: valid correlation with stride ``s``.

    With :meth:`from_scale_factor` this is the forward model ``S H`` of
    :class:`otinverse.WPPRestorer` (without its noise): a (4s)×(4s) Gaussian kernel with
    σ = s/2. Output sides are ``(n − k)//s + 1``.

    Parameters
    ----------
    kernel : array-like of shape (kh, kw)
        The blur ``k``, used as given (not normalised); it must fit in the image.
    stride : int
        The subsampling factor ``s`` (at least 1).
    image_shape : (int, int)
        Shape of ``x``; ``y`` has shape ``((h − kh)//s + 1, (w − kw)//s + 1)``.
    """

    def __init__(self, kernel, stride: int, image_shape):
        self.kernel = np.array(as_float_array(kernel, "kernel", ndim=2), dtype=np.float64)
        self.stride = check_int(stride, "stride", 1)
        self.input_shape = _check_shape(image_shape, "image_shape")
        k = self.kernel.shape
        if any(kk > n for kk, n in zip(k, self.input_shape, strict=True)):
            raise InvalidArgumentError(
                f"kernel: a {k[0]}×{k[1]} kernel does not fit {self.input_shape} images"
            )
        self.output_shape = tuple(
            (n - kk) // self.stride + 1 for n, kk in zip(self.input_shape, k, strict=True)
        )
        self._transfer = np.fft.rfft2(self.kernel, s=self.input_shape)

    @classmethod
    def from_scale_factor(cls, scale_factor: int, image_shape) -> BlurSubsampleOperator:
        """The super-resolution model of :class:`otinverse.WPPRestorer` for ``scale_factor``."""
        s = check_int(scale_factor, "scale_factor", 1)
        return cls(gaussian_kernel(4 * s, s / 2.0), s, image_shape)

    def with_input_shape(self, shape) -> BlurSubsampleOperator:
        return BlurSubsampleOperator(self.kernel, self.stride, shape)

    def _forward(self, x, xp):
        # Periodic correlation; its first n − k + 1 rows and columns never wrap (valid part).
        corr = xp.fft.irfft2(
            xp.fft.rfft2(x) * xp.asarray(np.conj(self._transfer)), s=self.input_shape
        )
        s, (m0, m1) = self.stride, self.output_shape
        return corr[..., : s * (m0 - 1) + 1 : s, : s * (m1 - 1) + 1 : s]

    def _adjoint(self, y, xp):
        s, (m0, m1), (n0, n1) = self.stride, self.output_shape, self.input_shape
        lead = y.shape[:-2]
        # Zero-filled upsampling by s, then cropped or padded to the image.
        widths = [(0, 0)] * len(lead) + [(0, 0), (0, s - 1), (0, 0), (0, s - 1)]
        up = xp.pad(y[..., :, None, :, None], widths)
        up = up.reshape(*lead, m0 * s, m1 * s)[..., : min(m0 * s, n0), : min(m1 * s, n1)]
        up = _pad_last2(up, (0, 0), (n0 - up.shape[-2], n1 - up.shape[-1]), xp)
        return xp.fft.irfft2(xp.fft.rfft2(up) * xp.asarray(self._transfer), s=self.input_shape)

    def __repr__(self) -> str:
        k = self.kernel.shape
        return (
            f"BlurSubsampleOperator(kernel={k[0]}×{k[1]}, stride={self.stride}, "
            f"image_shape={self.input_shape})"
        )


def cartesian_line_mask(
    n_lines: int, acceleration: float = 4.0, center_fraction: float = 0.04, random_state=None
) -> np.ndarray:
    """Boolean mask of sampled k-space lines (centred order: index ``n_lines // 2`` is DC).

    ``round(center_fraction · n_lines)`` central auto-calibration lines are always sampled and
    further lines are drawn uniformly without replacement until ``round(n_lines / acceleration)``
    lines are sampled (the ×4, 4 % ACS pattern of Sim et al., App. D.1).

    Parameters
    ----------
    n_lines : int
        Number of phase-encoding lines (rows of k-space), at least 2.
    acceleration : float, default=4.0
        Undersampling factor (at least 1): about ``n_lines / acceleration`` lines are sampled.
    center_fraction : float, default=0.04
        Fraction of the lines, in [0, 1], sampled around DC whatever the draw.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw of the other lines.

    Returns
    -------
    ndarray of bool, shape (n_lines,)
        True for the sampled lines, in centred order (for :class:`CartesianMaskOperator`).
    """
    n = check_int(n_lines, "n_lines", 2)
    acceleration = check_real(acceleration, "acceleration", low=1.0)
    center_fraction = check_real(center_fraction, "center_fraction", low=0.0)
    if center_fraction > 1:
        raise InvalidArgumentError(f"center_fraction: must be in [0, 1], got {center_fraction}")
    n_sampled = max(round(n / acceleration), 1)
    n_center = min(round(center_fraction * n), n_sampled)
    mask = np.zeros(n, dtype=bool)
    start = n // 2 - n_center // 2
    mask[start : start + n_center] = True
    rng = check_random_state(random_state)
    others = np.flatnonzero(~mask)
    mask[rng.choice(others, size=n_sampled - n_center, replace=False)] = True
    return mask


class CartesianMaskOperator(LinearOperator):
    """``y = F⁻¹ P_Ω F x``: accelerated Cartesian MRI in the image domain (Sim et al., eq. 23).

    ``F`` is the unitary 2-D DFT, ``P_Ω`` keeps the phase-encoding lines (rows of k-space, axis
    0) where ``line_mask`` is true (centred order, see :func:`cartesian_line_mask`). A real image
    of ``image_shape`` maps to a complex image returned as ``image_shape + (2,)`` (real,
    imaginary); the adjoint is ``Re(F⁻¹ P_Ω F z)``, so ``adjoint(apply(x))`` is the real part of
    the zero-filled reconstruction.

    Parameters
    ----------
    line_mask : ndarray of bool, shape (h,)
        The sampled phase-encoding lines in centred order, at least one true (see
        :func:`cartesian_line_mask`).
    image_shape : (int, int)
        Shape ``(h, w)`` of the real image ``x``, each side at least 2.
    """

    def __init__(self, line_mask, image_shape):
        self.input_shape = _check_shape(image_shape, "image_shape", minimum=2)
        mask = np.asarray(line_mask)
        if mask.dtype != bool or mask.shape != (self.input_shape[0],):
            raise InvalidArgumentError(
                f"line_mask: expected a boolean array of {self.input_shape[0]} lines, "
                f"got dtype {mask.dtype} and shape {mask.shape}"
            )
        if not mask.any():
            raise InvalidArgumentError("line_mask: must sample at least one line")
        self.line_mask = mask.copy()
        self.output_shape = (*self.input_shape, 2)
        self._kspace_mask = np.fft.ifftshift(mask).astype(np.float64)[:, None]

    def _masked(self, z, xp):
        return xp.fft.ifft2(
            xp.fft.fft2(z, norm="ortho") * xp.asarray(self._kspace_mask), norm="ortho"
        )

    def _forward(self, x, xp):
        z = self._masked(x, xp)
        return xp.stack([z.real, z.imag], axis=-1)

    def _adjoint(self, y, xp):
        return self._masked(y[..., 0] + 1j * y[..., 1], xp).real

    def __repr__(self) -> str:
        return (
            f"CartesianMaskOperator({int(self.line_mask.sum())}/{self.line_mask.size} lines, "
            f"image_shape={self.input_shape})"
        )
