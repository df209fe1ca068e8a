"""Super-resolution with a (semi-unbalanced) Wasserstein Patch Prior (Mignon, Galerne, Hidane,
Louchet & Mille, *Semi-unbalanced regularized optimal transport for image restoration*).

The high-resolution image x minimises

    λ/2 |S H x − y|² + (1/L) Σ_{ℓ<L} OT_{ε,ρ}(α_{A^ℓ x}, β_ℓ)          (Mignon et al., eq. 9)

with Adam on the pixels. ``H`` is a Gaussian blur, ``S`` subsampling (``degrade`` is the forward
model), ``A`` one level of a Gaussian pyramid, ``α_z`` the uniform measure on all p×p patches of
z and ``β_ℓ`` the uniform measure on reference patches sampled from ``A^ℓ`` of the reference image.
``OT_{ε,ρ}`` (eq. 4) keeps the image's patch marginal exact and relaxes the reference's by ρ·KL,
so reference patches that fit nothing (defects, outliers) receive almost no mass; ``reach=None``
is the balanced OT_ε (eq. 2) of the original WPP (Hertrich et al., IEEE TCI 2022), and
``image_reach`` also relaxes the image's marginal (the fully unbalanced OT_{ε,ρ,ρ} of §II).
``forward_model="identity"`` turns the problem into the denoising of eq. (3) (paper Fig. 1).

Conventions of this implementation (they correct or complete the paper):
* forward model: a (4s)×(4s) Gaussian kernel, σ = s/2, centred at (4s−1)/2, applied as a valid
  correlation with stride s (s = ``scale_factor``; 16×16, σ = 2 for ×4), plus N(0, noise_std²);
* pyramid: a 4×4 Gaussian (σ = 1) valid correlation with stride 2;
* the patch gradient is ``2(a_i x_i − Σ_j π_ij y_j)`` (c = |x − y|², summed over the p² pixels);
* λ: the prior's gradient per pixel scales like 1/N (N patches), so ``data_weight=None`` uses
  λ = 0.006·N₀/N with a calibrated N₀ (see :meth:`WPPRestorer.default_data_weight`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy import ndimage
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _core
from .._core import InvalidArgumentError
from .._validation import ValidatedParams, as_float_array
from ._operators import BlurSubsampleOperator, gaussian_kernel

__all__ = [
    "WPPRestoration",
    "WPPRestorer",
]

#: λ of Mignon et al. §III (the WPP reference code's weighting, λ/2 = 0.003) for 6×6 patches.
PAPER_DATA_WEIGHT = 0.006
#: Patch count N₀ at which ``data_weight=None`` gives PAPER_DATA_WEIGHT (a 640×640 image of 6×6
#: patches); calibrated, see :meth:`WPPRestorer.default_data_weight`.
DATA_WEIGHT_PATCHES = 635**2


@dataclass(frozen=True)
class WPPRestoration:
    """One restoration by :meth:`WPPRestorer.restore`: the image and the diagnostics of the run.

    Each parameter is an attribute of the same name.

    Parameters
    ----------
    image : ndarray
        The restored image.
    history : list of dict
        Per iteration: ``objective``, ``data``, ``ot`` (per scale), ``marginal_error`` (per
        scale, of that step's partial solve), ``ignored_fraction`` (per scale: share of reference
        patches receiving less than half of their weight).
    received_mass : list of ndarray
        Mass each reference patch receives in the plan at the returned image, per scale.
    ot : list of float
        OT value per scale at the returned image.
    data_weight : float
        The λ used.
    n_iter : int
        Adam iterations.
    sinkhorn_converged : bool
        Whether the final solve of every scale met ``sinkhorn_tol``.
    sinkhorn_marginal_error : list of float
        Marginal error of the final solve per scale.
    sinkhorn_n_iter : list of int
        Updates the final solve took per scale.
    """

    image: np.ndarray
    history: list[dict]
    received_mass: list[np.ndarray]
    ot: list[float]
    data_weight: float
    n_iter: int
    sinkhorn_converged: bool
    sinkhorn_marginal_error: list[float]
    sinkhorn_n_iter: list[int]


class WPPRestorer(ValidatedParams, BaseEstimator):
    """Super-resolution (or denoising) with a (semi-unbalanced) Wasserstein Patch Prior.

    Parameters
    ----------
    scale_factor : int, default=4
        Subsampling factor s of the forward model (kernel (4s)×(4s), σ = s/2, stride s).
        Ignored when ``forward_model="identity"``.
    patch_size : int, default=6
    n_scales : int, default=2
        Pyramid levels of the prior (L; the paper's L + 1).
    reg : float, default=4e-4
        Entropic regularisation ε, in cost units (squared distances of patches of [0, 1] pixels).
    reach : float or None, default=0.01
        ρ of the KL relaxation of the reference marginal (OT_{ε,ρ}, paper eq. 4); ``None`` is
        balanced OT_ε (eq. 2).
    image_reach : float or None, default=None
        ρ of a KL relaxation of the image's patch marginal too; with ``reach`` this is the fully
        unbalanced OT_{ε,ρ,ρ} that Mignon et al. (§II, Fig. 1) compares against. ``None`` keeps the
        image's marginal exact (the paper's choice).
    data_weight : float or None, default=None
        λ of eq. (9). ``None``: 0.006·N₀/N for N patches of the restored image, N₀ = 635²
        (about 0.70 at 64², 0.16 at 128²; see :meth:`default_data_weight`).
    forward_model : {"blur_subsample", "identity"}, default="blur_subsample"
        ``"blur_subsample"``: the super-resolution model S H of eq. (9); ``"identity"``: the
        denoising problem (3) of Mignon et al. (Fig. 1), the observation has the image's shape.
    n_reference_patches : int, default=10000
        Reference patches sampled per scale in :meth:`fit` (all of them if fewer exist).
    max_iter : int, default=200
        Adam iterations of :meth:`predict`.
    learning_rate : float, default=0.01
        Adam's step (Mignon et al. §III and the WPP reference code: 0.01).
    init : {"bicubic", "constant"}, default="bicubic"
        Starting image: cubic-spline upsampling of the input aligned with the forward model (the
        observation itself for ``forward_model="identity"``), or its mean everywhere.
    noise_std : float, default=0.01
        Standard deviation of the noise :meth:`degrade` adds.
    sinkhorn_max_iter : int, default=5
        Sinkhorn updates at ε per Adam step.
    sinkhorn_eps_scaling : float in (0, 1) or None, default=None
        ``None``: every Adam step warm-starts from the previous step's potentials (as the WPP
        reference code keeps its dual variable); the first solve anneals ε by factors of 4 and
        gets 10 times ``sinkhorn_max_iter``. A factor q: every Adam step starts from (0, 0) and
        anneals ε from the patch clouds' diameter by q per stage with one update per stage, as
        Mignon et al. §II describe (Feydy's ε-scaling), then runs ``sinkhorn_max_iter`` updates
        at ε.
    sinkhorn_tol : float, default=1e-3
        Relative L1 marginal error required of the final solve (see ``sinkhorn_final_max_iter``);
        the solves inside the descent stop early when they meet it.
    sinkhorn_final_max_iter : int, default=1000
        Budget of the solve at the returned image (warm-started), which gives the received
        masses, the last ``ot`` values and ``sinkhorn_converged`` of :meth:`restore`. The solves
        inside the descent are partial by design; a :class:`~sklearn.exceptions.ConvergenceWarning`
        is raised only when this final solve misses ``sinkhorn_tol``.
    random_state : int, RandomState or None
        Seeds the patch sampling and the noise of :meth:`degrade`.
    verbose : bool, default=False
        Show a tqdm progress bar.
    sinkhorn_kernel : {"auto", "log"}, default="auto"
        How the patch OT's Sinkhorn evaluates its kernel. ``"auto"``: the updates at ``reg``, the
        plan's sums and the gradient run on the pairs within a bound of each patch's best match,
        found once per solve; a pair left out is certified to change no reported number beyond
        rounding, else it is computed exactly (same results as ``"log"`` to rounding, several
        times faster at the prior's small ε). ``"log"``: the online log-domain kernel over all
        pairs for every pass.

    Attributes
    ----------
    reference_patches_ : list of ndarray
        Reference patches per scale, (M_ℓ, p²).
    reference_positions_ : list of ndarray or None
        Top-left (row, col) of each sampled patch in the level-ℓ reference image (``None`` when
        the patches were given to :meth:`fit` directly).
    reference_shape_ : tuple or None
        Shape of the reference image (``None`` when patches were given).

    :meth:`predict` and :meth:`restore` leave these unchanged; the diagnostics of a restoration
    come back in the :class:`WPPRestoration` of :meth:`restore`.
    """

    _parameter_constraints: ClassVar[dict] = {
        "scale_factor": [Interval(Integral, 1, None, closed="left")],
        "patch_size": [Interval(Integral, 1, None, closed="left")],
        "n_scales": [Interval(Integral, 1, None, closed="left")],
        "reg": [Interval(Real, 0, None, closed="neither")],
        "reach": [Interval(Real, 0, None, closed="neither"), None],
        "image_reach": [Interval(Real, 0, None, closed="neither"), None],
        "data_weight": [Interval(Real, 0, None, closed="neither"), None],
        "forward_model": [StrOptions({"blur_subsample", "identity"})],
        "n_reference_patches": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "init": [StrOptions({"bicubic", "constant"})],
        "noise_std": [Interval(Real, 0, None, closed="left")],
        "sinkhorn_max_iter": [Interval(Integral, 1, None, closed="left")],
        "sinkhorn_eps_scaling": [Interval(Real, 0, 1, closed="neither"), None],
        "sinkhorn_tol": [Interval(Real, 0, None, closed="left")],
        "sinkhorn_final_max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "sinkhorn_kernel": [StrOptions({"auto", "log"})],
    }

    def __init__(
        self,
        scale_factor=4,
        patch_size=6,
        n_scales=2,
        reg=4e-4,
        reach=0.01,
        image_reach=None,
        data_weight=None,
        forward_model="blur_subsample",
        n_reference_patches=10000,
        max_iter=200,
        learning_rate=0.01,
        init="bicubic",
        noise_std=0.01,
        sinkhorn_max_iter=5,
        sinkhorn_eps_scaling=None,
        sinkhorn_tol=1e-3,
        sinkhorn_final_max_iter=1000,
        random_state=None,
        verbose=False,
        sinkhorn_kernel="auto",
    ):
        self.scale_factor = scale_factor
        self.patch_size = patch_size
        self.n_scales = n_scales
        self.reg = reg
        self.reach = reach
        self.image_reach = image_reach
        self.data_weight = data_weight
        self.forward_model = forward_model
        self.n_reference_patches = n_reference_patches
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.init = init
        self.noise_std = noise_std
        self.sinkhorn_max_iter = sinkhorn_max_iter
        self.sinkhorn_eps_scaling = sinkhorn_eps_scaling
        self.sinkhorn_tol = sinkhorn_tol
        self.sinkhorn_final_max_iter = sinkhorn_final_max_iter
        self.random_state = random_state
        self.verbose = verbose
        self.sinkhorn_kernel = sinkhorn_kernel

    # ----------------------------------------------------------------- validation and operators
    def _blur(self, shape):
        """``S H`` for a high-resolution image of ``shape``."""
        return BlurSubsampleOperator.from_scale_factor(int(self.scale_factor), shape)

    #: The pyramid's ``A``: a 4×4 Gaussian blur (σ = 1) and ×2 subsampling (Mignon et al., §III).
    _PYRAMID_KERNEL = gaussian_kernel(4, 1.0)

    def _pyramid_step(self, shape):
        return BlurSubsampleOperator(self._PYRAMID_KERNEL, 2, shape)

    def _pyramid(self, image):
        """``[x, A x, A² x, …]`` with ``n_scales`` levels."""
        levels = [image]
        for _ in range(int(self.n_scales) - 1):
            levels.append(self._pyramid_step(levels[-1].shape).apply(levels[-1]))
        return levels

    def _pyramid_shapes(self, shape, name):
        shapes = [tuple(shape)]
        p = int(self.patch_size)
        for _ in range(int(self.n_scales) - 1):
            h, w = shapes[-1]
            if h < 4 or w < 4:
                break
            shapes.append(((h - 4) // 2 + 1, (w - 4) // 2 + 1))
        if len(shapes) < int(self.n_scales) or min(min(s) for s in shapes) < p:
            raise InvalidArgumentError(
                f"{name}: a {shape[0]}×{shape[1]} image is too small for {self.n_scales} pyramid "
                f"levels of {p}×{p} patches (level sizes {shapes})"
            )
        return shapes

    def _check_image(self, image, name):
        arr = image if isinstance(image, np.ndarray) else np.asarray(image)
        if arr.ndim != 2:
            raise InvalidArgumentError(
                f"{name}: expected a 2-D grey-level image, got shape {arr.shape}"
            )
        return np.ascontiguousarray(as_float_array(arr, name, ndim=2))

    def _forward(self, image):
        if self.forward_model == "identity":
            return image
        return self._blur(image.shape).apply(image)

    def _forward_adjoint(self, residual, shape):
        if self.forward_model == "identity":
            return residual
        return self._blur(shape).adjoint(residual)

    def high_res_shape(self, low_res_shape):
        """Shape of the image whose :meth:`degrade` has ``low_res_shape``."""
        if self.forward_model == "identity":
            return tuple(int(n) for n in low_res_shape)
        s, k = int(self.scale_factor), 4 * int(self.scale_factor)
        return tuple(s * (n - 1) + k for n in low_res_shape)

    def degrade(self, image):
        """The forward model: blur, subsample (valid correlation, stride s) and add seeded noise
        (only the noise for ``forward_model="identity"``)."""
        self._validate_params()
        image = self._check_image(image, "image")
        if self.forward_model == "blur_subsample":
            s, k = int(self.scale_factor), 4 * int(self.scale_factor)
            for n in image.shape:
                if n < k or (n - k) % s:
                    raise InvalidArgumentError(
                        f"image: side {n} does not match scale_factor={s}: sides must be "
                        f"{k} + {s}·m (the {k}×{k} blur is applied at valid positions with "
                        f"stride {s})"
                    )
        low = self._forward(image)
        rng = check_random_state(self.random_state)
        return low + self.noise_std * rng.standard_normal(low.shape)

    # --------------------------------------------------------------------------------- fitting
    def fit(self, reference_image=None, y=None, *, reference_patches=None):
        """Samples ``n_reference_patches`` patches from each pyramid level of the reference image.

        Alternatively ``reference_patches`` gives the reference measure directly (samples of a
        patch model, as in the denoising experiment of Mignon et al., Fig. 1): an (M, p²) array when
        ``n_scales=1``, or a sequence of ``n_scales`` such arrays (level ℓ patches of A^ℓ x). They
        are used as given (uniform weights), not subsampled.
        """
        self._validate_params()
        if (reference_image is None) == (reference_patches is None):
            raise InvalidArgumentError(
                "reference_image: give exactly one of reference_image and reference_patches"
            )
        if reference_patches is not None:
            return self._fit_patches(reference_patches)
        ref = self._check_image(reference_image, "reference_image")
        self._pyramid_shapes(ref.shape, "reference_image")
        rng = check_random_state(self.random_state)
        p = int(self.patch_size)
        self.reference_patches_, self.reference_positions_ = [], []
        for level in self._pyramid(ref):
            all_patches = _core.extract_patches(np.ascontiguousarray(level), p)
            n = all_patches.shape[0]
            m = min(int(self.n_reference_patches), n)
            idx = np.sort(rng.choice(n, size=m, replace=False))
            nw = level.shape[1] - p + 1
            self.reference_patches_.append(np.ascontiguousarray(all_patches[idx]))
            self.reference_positions_.append(np.stack([idx // nw, idx % nw], axis=1))
        self.reference_shape_ = ref.shape
        return self

    def _fit_patches(self, reference_patches):
        p2, n_levels = int(self.patch_size) ** 2, int(self.n_scales)
        if isinstance(reference_patches, (list, tuple)):
            levels = list(reference_patches)
        elif n_levels == 1:
            levels = [reference_patches]
        else:
            raise InvalidArgumentError(
                f"reference_patches: with n_scales={n_levels} give a list of {n_levels} patch "
                "arrays"
            )
        if len(levels) != n_levels:
            raise InvalidArgumentError(
                f"reference_patches: expected {n_levels} arrays (one per scale), got {len(levels)}"
            )
        self.reference_patches_ = []
        for ell, patches in enumerate(levels):
            arr = as_float_array(patches, f"reference_patches[{ell}]", ndim=2)
            if arr.shape[1] != p2:
                raise InvalidArgumentError(
                    f"reference_patches[{ell}]: rows must be flattened "
                    f"{self.patch_size}×{self.patch_size} patches ({p2} values), got shape "
                    f"{arr.shape}"
                )
            self.reference_patches_.append(np.ascontiguousarray(arr))
        self.reference_positions_ = [None] * n_levels
        self.reference_shape_ = None
        return self

    # ------------------------------------------------------------------------------ objective
    def default_data_weight(self, shape):
        """λ used when ``data_weight=None`` for a restored image of ``shape``: 0.006·N₀/N.

        The prior of eq. (9) is an average over the N patches of the image, so its gradient per
        pixel scales like 1/N while the data term's does not: λ ∝ 1/N keeps their balance across
        image sizes. The reference count N₀ = 635² is calibrated, not the paper's 256² images
        (N = 251²): transferred from 256² (λ ≈ 0.109 at 64²), the prior outweighs the data so much
        that restorations of the skimage textures keep LR residuals of 3–4 noise levels and fall
        below bicubic interpolation, whereas with N₀ = 635² (λ ≈ 0.70 at 64²) OT_{ε,ρ} fits the
        data to about the noise level and beats both bicubic interpolation and the prior-free
        fit (``benches/RESULTS_wpp.md``).
        """
        p = int(self.patch_size)
        n = (shape[0] - p + 1) * (shape[1] - p + 1)
        return PAPER_DATA_WEIGHT * DATA_WEIGHT_PATCHES / n

    def prior(self, image, *, potentials=None, sinkhorn_max_iter=None, sinkhorn_tol=None):
        """``(1/L) Σ_ℓ OT_{ε,ρ}(α_{A^ℓ x}, β_ℓ)`` and its gradient with respect to the pixels.

        The gradient is eq. (7)–(8) of Mignon et al., ``2(a_i x_i − Σ_j π_ij y_j)`` per patch
        (g held fixed, envelope theorem), folded onto the pixels and back through the pyramid.
        ``potentials`` (from a previous ``info``) warm-start every scale at ε; without them each
        scale starts from (0, 0) and anneals ε (see ``sinkhorn_eps_scaling``). Returns
        ``(value, gradient, info)``; ``info`` holds per-scale values, potentials, received masses,
        marginal errors, iteration counts and convergence flags.
        """
        check_is_fitted(self, "reference_patches_")
        image = self._check_image(image, "image")
        self._pyramid_shapes(image.shape, "image")
        levels = self._pyramid(image)
        n_levels = len(levels)
        max_iter = int(self.sinkhorn_max_iter if sinkhorn_max_iter is None else sinkhorn_max_iter)
        tol = float(self.sinkhorn_tol if sinkhorn_tol is None else sinkhorn_tol)
        q = self.sinkhorn_eps_scaling
        info = {
            k: [] for k in ("ot", "potentials", "received", "converged", "marginal_error", "n_iter")
        }
        grads = []
        for ell, (level, ref) in enumerate(zip(levels, self.reference_patches_, strict=True)):
            warm = potentials[ell] if potentials is not None else None
            if warm is not None:
                budget, scaling, stage_iter, f0, g0 = max_iter, None, None, warm[0], warm[1]
            elif q is not None:
                # Mignon et al. §II: from (0, 0), one update per ε of the annealing, then
                # max_iter at ε.
                budget, scaling, stage_iter, f0, g0 = max_iter, float(q), 1, None, None
            else:
                # First solve of the warm-started descent: ε-scaling by 4, each stage to 1e-3.
                budget, scaling, stage_iter, f0, g0 = 10 * max_iter, 0.25, None, None, None
            options = _core.SinkhornOptions(
                reg=self.reg,
                reach_a=self.image_reach,
                reach_b=self.reach,
                max_iter=budget,
                tol=tol,
                update="alternating",
                eps_scaling=scaling,
                stage_iter=stage_iter,
                kernel=self.sinkhorn_kernel,
            )
            res = _core.patch_prior(
                np.ascontiguousarray(level), ref, int(self.patch_size), options, f0, g0
            )
            solved = res.sinkhorn
            grads.append(res.gradient)
            for key, v in zip(
                ("ot", "potentials", "received", "converged", "marginal_error", "n_iter"),
                (
                    res.value,
                    (solved.f, solved.g),
                    res.received,
                    solved.converged,
                    solved.marginal_error,
                    solved.n_iter,
                ),
                strict=True,
            ):
                info[key].append(v)
        # Back through the pyramid: grad_x = Σ_ℓ (Aᵀ)^ℓ grad_ℓ, accumulated from the coarsest level.
        total = grads[-1]
        for ell in range(n_levels - 2, -1, -1):
            total = grads[ell] + self._pyramid_step(levels[ell].shape).adjoint(total)
        return float(np.mean(info["ot"])), total / n_levels, info

    # ----------------------------------------------------------------------------- prediction
    def upsample(self, low_res_image):
        """Bicubic interpolation of ``low_res_image`` onto the high-resolution grid of the forward
        model (LR pixel r is centred on HR coordinate s·r + (4s − 1)/2): the start of
        ``init="bicubic"`` and the usual baseline to compare a restoration with. A copy for
        ``forward_model="identity"``. Needs no :meth:`fit`."""
        self._validate_params()
        low = self._check_image(low_res_image, "low_res_image")
        return self._upsample(low, self.high_res_shape(low.shape))

    def _initial_image(self, low, shape):
        if self.init == "constant":
            return np.full(shape, float(low.mean()))
        return self._upsample(low, shape)

    def _upsample(self, low, shape):
        if self.forward_model == "identity":
            return np.array(low, dtype=np.float64, copy=True)
        s, k = int(self.scale_factor), 4 * int(self.scale_factor)
        centre = (k - 1) / 2.0
        rows = (np.arange(shape[0]) - centre) / s
        cols = (np.arange(shape[1]) - centre) / s
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        return ndimage.map_coordinates(low, [rr, cc], order=3, mode="nearest")

    def predict(self, low_res_image):
        """The restored image (shape ``high_res_shape(low_res_image.shape)``); see :meth:`restore`
        for the same image with the diagnostics of the run."""
        return self.restore(low_res_image).image

    def restore(self, low_res_image) -> WPPRestoration:
        """Restores ``low_res_image`` and returns the image with the diagnostics of this call.

        Minimises eq. (9) of Mignon et al. (eq. (3) for ``forward_model="identity"``) with Adam
        on the pixels, then solves the OT at the returned image once more with the budget
        ``sinkhorn_final_max_iter`` for the reported received masses, OT values and convergence.
        The estimator is not changed.
        """
        check_is_fitted(self, "reference_patches_")
        self._validate_params()
        low = self._check_image(low_res_image, "low_res_image")
        shape = self.high_res_shape(low.shape)
        self._pyramid_shapes(shape, "low_res_image")
        lam = (
            float(self.data_weight)
            if self.data_weight is not None
            else self.default_data_weight(shape)
        )
        x, history, potentials = self._descend(low, shape, lam)
        # The solves inside the descent are partial by design (a few updates per Adam step); the
        # reported plan is that of the returned image, solved to sinkhorn_tol from the last
        # potentials. Only this solve decides the convergence warning.
        _, _, final = self.prior(
            x, potentials=potentials, sinkhorn_max_iter=int(self.sinkhorn_final_max_iter)
        )
        result = WPPRestoration(
            image=x,
            history=history,
            received_mass=final["received"],
            ot=final["ot"],
            data_weight=lam,
            n_iter=int(self.max_iter),
            sinkhorn_converged=all(final["converged"]),
            sinkhorn_marginal_error=final["marginal_error"],
            sinkhorn_n_iter=final["n_iter"],
        )
        if not result.sinkhorn_converged:
            errors = ", ".join(f"{e:.2g}" for e in result.sinkhorn_marginal_error)
            warnings.warn(
                "WPPRestorer: the Sinkhorn solve at the returned image did not reach "
                f"sinkhorn_tol={self.sinkhorn_tol:g} in "
                f"sinkhorn_final_max_iter={self.sinkhorn_final_max_iter} updates (marginal errors "
                f"per scale: {errors}); the plans behind the descent are then unreliable too. "
                "Raise sinkhorn_final_max_iter or reg.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return result

    def _descend(self, low, shape, lam):
        """Adam on the pixels from the initial image; returns the image, the per-iteration
        history and the last step's potentials."""
        x = self._initial_image(low, shape)
        m1, m2 = np.zeros_like(x), np.zeros_like(x)
        beta1, beta2, lr, adam_eps = 0.9, 0.999, float(self.learning_rate), 1e-8
        warm_start = self.sinkhorn_eps_scaling is None
        potentials = None
        history = []
        iterator = range(int(self.max_iter))
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(iterator, desc="WPP", unit="it")
            iterator = bar
        for t in iterator:
            residual = self._forward(x) - low
            data = 0.5 * lam * float(np.sum(residual**2))
            grad = lam * self._forward_adjoint(residual, shape)
            prior, prior_grad, info = self.prior(x, potentials=potentials)
            if warm_start:
                potentials = info["potentials"]
            grad += prior_grad
            # Adam (Kingma & Ba), as in Mignon et al. §III and the WPP reference code.
            m1 = beta1 * m1 + (1 - beta1) * grad
            m2 = beta2 * m2 + (1 - beta2) * grad**2
            m1_hat = m1 / (1 - beta1 ** (t + 1))
            m2_hat = m2 / (1 - beta2 ** (t + 1))
            x = x - lr * m1_hat / (np.sqrt(m2_hat) + adam_eps)
            ignored = [float(np.mean(r * r.size < 0.5)) for r in info["received"]]
            history.append(
                {
                    "objective": data + prior,
                    "data": data,
                    "ot": info["ot"],
                    "marginal_error": info["marginal_error"],
                    "ignored_fraction": ignored,
                }
            )
            if bar is not None:
                bar.set_postfix(objective=f"{data + prior:.4g}")
        return x, history, info["potentials"]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # fit takes a reference image (or patches) and no target; an image is one 2-D array,
        # not samples × features, and is restored as a whole.
        tags.target_tags.required = False
        tags.requires_fit = True
        return tags
