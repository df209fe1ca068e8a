"""Optimal-transport image classification after Barton & Tai, *Improving Optimal Transportation
Classification Methods in Machine Learning*.

Two schemes (their §3):

* **image retrieval** (``scheme="ir"``): a test image, as a histogram on the pixel grid, gets the
  class whose prototype is cheapest to transport it to, ``argmin_c ⟨C, P⟩`` under a ground cost
  ``h(‖[i] − [j]‖)`` between pixel positions (eq. IR, ranked by the transport cost);
* **domain adaptation** (``scheme="da"``): one coupling γ between the test set and the labelled
  set under an image-to-image cost; labels travel along it (eq. DA).

Concave costs (``"log1p"``, ``"atan"``, ``d^p`` with p < 1) beat convex ones (§3.1, §4.1);
Bernoulli-mixture prototypes beat class means and random samples (§3.2, §4.2); the γ-based
translation (§3.3) moves each test image by ``Σ γ_ij ([j] − [i])`` before a second solve.
"""

from __future__ import annotations

import numbers
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from .._validation import ValidatedParams
from ..costs._ground_cost import GROUND_COSTS, grid_points, ground_cost
from ..da._transport import EMDTransport, SinkhornTransport
from ..solvers._batch import sinkhorn_batch
from ._mixture import BernoulliMixture

__all__ = ["OTClassifier"]

#: Test images per batched call, so the progress bar moves.
_CHUNK = 64


def _pot():
    """POT, imported on first use: it imports every installed tensor library (JAX with the
    ``learn`` extra), which ``import otinverse`` must not."""
    import ot

    return ot


class OTClassifier(ValidatedParams, ClassifierMixin, BaseEstimator):
    """Optimal-transport classifier of non-negative images (Barton & Tai).

    Parameters
    ----------
    scheme : {"ir", "da"}, default="ir"
        Image retrieval against class prototypes, or domain adaptation: one coupling between
        the images to classify and the training images. ``"da"`` is transductive: the labels
        of a batch depend on the whole batch (balanced OT spreads the test mass over all
        training classes), so classify a batch at once.
    cost : {"atan", "log1p", "distance", "sqdistance"} or float, default="atan"
        ``h`` of the ground cost ``h(d)``, or ``p > 0`` for ``d^p``. For ``"ir"``, ``d`` is
        the distance between pixel positions (pixel units); for ``"da"`` the Euclidean
        distance between images.
    reg : float or None, default=0.3
        Entropic regularisation ε (the paper's ``1/λ``), in cost units after ``norm``;
        ``None`` solves exact OT with POT's network simplex (``ot.emd``).
    prototypes : {"mean", "mixture", "samples"}, default="mean"
        ``"ir"`` only: class mean images, the means of a :class:`~otinverse.BernoulliMixture`
        per class, or random training images.
    n_prototypes : int, default=1
        Prototypes per class (``"mixture"``: components requested; empty ones are dropped).
    label_rule : {"class_sum", "max"}, default="class_sum"
        ``"da"`` only: the class with the largest coupled mass (POT's ``transform_labels``
        argmax) or the label of the training image with the largest coupling entry (eq. DA).
    translation : bool, default=False
        ``"ir"`` only: γ-based translation (§3.3). Each test image is moved by the plan's mean
        displacement ``Σ_ij γ_ij ([j] − [i])`` towards each prototype (the difference of the
        centres of mass), rounded to whole pixels and clipped to the image, and the transport
        cost to that prototype is solved again.
    image_shape : (int, int) or None, default=None
        Shape of a flattened image. ``None``: taken from 3-D ``X`` (n, h, w); for 2-D ``X``,
        a square when the number of features is a square, else one row of pixels.
    norm : {None, "median", "max"}, default=None
        Divide the cost matrix by its median or maximum before ``reg`` applies (POT's ``norm``).
    temperature : float or None, default=None
        ``"ir"``: ``predict_proba`` is ``softmax(-class_cost / temperature)``; ``None`` uses
        ``reg`` (or 0.05 × the median ground cost for exact OT). Ignored by ``"da"``, whose
        probabilities are the coupled class masses.
    sinkhorn_max_iter : int, default=100000
        Sinkhorn iterations per transport problem (a few pairs need ~30000 with ``"sqdistance"``
        at ``reg=0.1``, where ε is 0.1 % of the cost's range).
    sinkhorn_tol : float, default=1e-9
        Relative L1 marginal error at which Sinkhorn stops.
    random_state : int, RandomState or None
        Seeds the prototype sampling and the mixtures' initialisation.
    verbose : bool, default=False
        tqdm progress bar over the images being classified (``"ir"``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    image_shape_ : tuple of int
    prototypes_ : ndarray of shape (n_prototypes_total, n_features)
        Prototype histograms (``"ir"``), each summing to one.
    prototype_labels_ : ndarray of shape (n_prototypes_total,)
    ground_cost_ : ndarray of shape (n_features, n_features)
        Cost between pixel positions (``"ir"``, after ``norm``).
    temperature_ : float
    """

    _parameter_constraints: ClassVar[dict] = {
        "scheme": [StrOptions({"ir", "da"})],
        "cost": [StrOptions(set(GROUND_COSTS)), Interval(numbers.Real, 0, None, closed="neither")],
        "reg": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "prototypes": [StrOptions({"mean", "mixture", "samples"})],
        "n_prototypes": [Interval(numbers.Integral, 1, None, closed="left")],
        "label_rule": [StrOptions({"class_sum", "max"})],
        "translation": ["boolean"],
        "image_shape": [tuple, list, None],
        "norm": [StrOptions({"median", "max"}), None],
        "temperature": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "sinkhorn_max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "sinkhorn_tol": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self, scheme="ir", *, cost="atan", reg=0.3, prototypes="mean", n_prototypes=1,
        label_rule="class_sum", translation=False, image_shape=None, norm=None,
        temperature=None, sinkhorn_max_iter=100_000, sinkhorn_tol=1e-9, random_state=None,
        verbose=False,
    ):  # fmt: skip
        self.scheme = scheme
        self.cost = cost
        self.reg = reg
        self.prototypes = prototypes
        self.n_prototypes = n_prototypes
        self.label_rule = label_rule
        self.translation = translation
        self.image_shape = image_shape
        self.norm = norm
        self.temperature = temperature
        self.sinkhorn_max_iter = sinkhorn_max_iter
        self.sinkhorn_tol = sinkhorn_tol
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    # ----------------------------------------------------------------------------- input
    def _flatten(self, X):
        """(n, h, w) images or (n, n_features) rows as a 2-D float array, and the image shape."""
        X = check_array(X, dtype=np.float64, allow_nd=True, input_name="X")
        if X.ndim == 3:
            return X.reshape(X.shape[0], -1), X.shape[1:]
        if X.ndim != 2:
            raise ValueError(f"X: expected images (n, h, w) or rows (n, h*w), got {X.shape}")
        return X, None

    def _resolve_shape(self, n_features, shape_3d):
        shape = self.image_shape if self.image_shape is not None else shape_3d
        if shape is None:
            side = round(np.sqrt(n_features))
            shape = (side, side) if side * side == n_features else (1, n_features)
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or shape[0] * shape[1] != n_features:
            raise ValueError(
                f"image_shape: {shape} does not hold the {n_features} pixels of an image"
            )
        return shape

    @staticmethod
    def _check_pixels(X):
        check_non_negative(X, "OTClassifier (X: pixels must be non-negative)")
        if X.shape[1] < 2:
            raise ValueError(
                f"X: images need at least 2 pixels, got {X.shape[1]} feature(s): every "
                "one-pixel histogram is the same"
            )
        empty = np.flatnonzero(X.sum(axis=1) <= 0)
        if empty.size:
            raise ValueError(
                f"X: image {empty[0]} has no mass (all pixels zero); OT needs a histogram"
            )

    def _prepare(self, X):
        """Validated test images (2-D) for the fitted estimator."""
        X, shape_3d = self._flatten(X)
        if shape_3d is not None and tuple(shape_3d) != self.image_shape_:
            raise ValueError(f"X: images have shape {shape_3d}, fitted on {self.image_shape_}")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        self._check_pixels(X)
        return X

    # ----------------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Stores the training images (``"da"``) or builds the class prototypes (``"ir"``)."""
        X, shape_3d = self._flatten(X)
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self._check_pixels(X)
        self.image_shape_ = self._resolve_shape(X.shape[1], shape_3d)
        self.classes_, y_codes = np.unique(y, return_inverse=True)
        if self.scheme == "da":
            if self.translation:
                raise ValueError("translation: the γ-based translation applies to scheme='ir'")
            self.train_images_, self.train_codes_ = X, y_codes
            self.temperature_ = self.temperature
            return self
        self.prototypes_, codes = self._build_prototypes(X, y_codes)
        self.prototype_labels_ = self.classes_[codes]
        self._prototype_codes = codes
        self._points = grid_points(self.image_shape_)
        C = ground_cost(self._points, cost=self.cost)
        self.ground_cost_ = C / self._norm_scale(C)
        if self.temperature is not None:
            self.temperature_ = float(self.temperature)
        elif self.reg is not None:
            self.temperature_ = float(self.reg)
        else:
            self.temperature_ = 0.05 * float(np.median(self.ground_cost_))
        return self

    def _norm_scale(self, C):
        if self.norm == "median":
            return float(np.median(C))
        if self.norm == "max":
            return float(C.max())
        return 1.0

    def _build_prototypes(self, X, codes):
        """Prototype histograms and their class codes."""
        rng = check_random_state(self.random_state)
        k = self.n_prototypes
        if self.prototypes == "mean" and k != 1:
            raise ValueError("n_prototypes: class means give one prototype per class; use 1")
        scale = X.max()
        protos, labels = [], []
        for c in range(len(self.classes_)):
            members = X[codes == c]
            if k > len(members):
                raise ValueError(
                    f"n_prototypes: {k} per class, but class {self.classes_[c]!r} has only "
                    f"{len(members)} training images"
                )
            if self.prototypes == "mean":
                p = members.mean(axis=0, keepdims=True)
            elif self.prototypes == "samples":
                p = members[rng.choice(len(members), size=k, replace=False)]
            else:
                seed = rng.randint(np.iinfo(np.int32).max)
                p = BernoulliMixture(k, random_state=seed).fit(members / scale).means_
            protos.append(p / p.sum(axis=1, keepdims=True))
            labels.append(np.full(len(p), c))
        return np.vstack(protos), np.concatenate(labels)

    # ----------------------------------------------------------------------------- predict
    def _class_scores(self, X):
        """(n, n_classes) scores, larger is better."""
        check_is_fitted(self)
        X = self._prepare(X)
        if self.scheme == "da":
            return self._da_scores(X)
        costs = self._ir_costs(X)
        best = np.full((X.shape[0], len(self.classes_)), np.inf)
        for c in range(len(self.classes_)):
            best[:, c] = costs[:, self._prototype_codes == c].min(axis=1)
        return -best

    def decision_function(self, X):
        """Class scores, larger is better: minus the cheapest prototype's transport cost per
        class (``"ir"``), or the coupled class masses (``"da"``). Shape (n, n_classes); for two
        classes, scikit-learn's (n,) score of ``classes_[1]`` (its score minus the other's)."""
        scores = self._class_scores(X)
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X):
        """Class of each image."""
        scores = self._class_scores(X)
        return self.classes_[scores.argmax(axis=1)]

    def predict_proba(self, X):
        """``"ir"``: softmin of the class costs at ``temperature_``; ``"da"``: coupled masses."""
        scores = self._class_scores(X)
        if self.scheme == "da":
            return scores / scores.sum(axis=1, keepdims=True)
        z = scores / self.temperature_
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    # ----------------------------------------------------------------------------- IR
    def _ir_costs(self, X):
        """Transport cost ``⟨C, P⟩`` of every image to every prototype, (n, n_prototypes)."""
        H = X / X.sum(axis=1, keepdims=True)
        chunks = range(0, len(H), _CHUNK)
        if self.verbose:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="OT classify", unit="batch")
        out = []
        for start in chunks:
            block = H[start : start + _CHUNK]
            costs, shifts = self._solve(block)
            if self.translation:
                costs = self._translated_costs(block, shifts)
            out.append(costs)
        return np.vstack(out)

    def _solve(self, H):
        """Costs (n, P) and the plans' displacements (n, P, 2) of images H against prototypes."""
        pts = self._points if self.translation else None
        if self.reg is not None:
            res = sinkhorn_batch(
                H, self.prototypes_, self.ground_cost_, self.reg, max_iter=self.sinkhorn_max_iter,
                tol=self.sinkhorn_tol, x=pts, y=pts,
            )  # fmt: skip
            return res.transport_cost, res.displacement
        return _emd_costs(H, self.prototypes_, self.ground_cost_, pts)

    def _translated_costs(self, H, shifts):
        """Costs after moving each image by its plan's displacement towards each prototype
        (§3.3), rounded to whole pixels so the moved image stays on the grid: a sub-pixel move
        would cost every pixel ``h(|fraction|)``, a bias that differs between prototypes."""
        costs = np.empty(shifts.shape[:2])
        for k, b in enumerate(self.prototypes_):
            moved = _shift_on_grid(H, np.rint(shifts[:, k]).astype(int), self.image_shape_)
            costs[:, k] = self._solve_against(moved, b)
        return costs

    def _solve_against(self, H, b):
        """Transport costs of histograms H (n, n_features) to one prototype b."""
        if self.reg is None:
            return _emd_costs(H, b[None], self.ground_cost_, None)[0][:, 0]
        return sinkhorn_batch(
            H,
            b[None],
            self.ground_cost_,
            self.reg,
            max_iter=self.sinkhorn_max_iter,
            tol=self.sinkhorn_tol,
        ).transport_cost[:, 0]

    # ----------------------------------------------------------------------------- DA
    def _da_scores(self, X):
        """Class scores of each test image from one coupling with the training images."""
        if self.reg is None:
            transport = EMDTransport(metric=self.cost, norm=self.norm)
        else:
            transport = SinkhornTransport(
                self.reg,
                metric=self.cost,
                norm=self.norm,
                max_iter=self.sinkhorn_max_iter,
                tol=self.sinkhorn_tol,
            )
        transport.fit(self.train_images_, self.train_codes_, Xt=X)
        if self.label_rule == "class_sum":
            return transport.transform_labels()
        gamma = transport.coupling_ / transport.coupling_.sum(axis=0, keepdims=True)
        scores = np.zeros((X.shape[0], len(self.classes_)))
        for c in range(len(self.classes_)):
            rows = self.train_codes_ == c
            if rows.any():
                scores[:, c] = gamma[rows].max(axis=0)
        return scores


def _shift_on_grid(H, shifts, shape):
    """Each image of H (flattened, C order) moved by whole pixels ``shifts[i] = (dy, dx)``,
    each move clipped so that no pixel with mass leaves the image."""
    h, w = shape
    out = np.zeros_like(H)
    for i, (img, (dy, dx)) in enumerate(zip(H.reshape(-1, h, w), shifts, strict=True)):
        rows = np.flatnonzero(img.any(axis=1))
        cols = np.flatnonzero(img.any(axis=0))
        dy = int(np.clip(dy, -rows[0], h - 1 - rows[-1]))
        dx = int(np.clip(dx, -cols[0], w - 1 - cols[-1]))
        moved = out[i].reshape(h, w)
        moved[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
            max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    return out


def _emd_costs(H, B, C, pts):
    """Exact transport costs (n, P) of histograms H (n, n_features) to histograms B (P,
    n_features), each summing to one, under the pixel cost C, and the plans' displacements
    ``Σ γ_ij ([j] − [i])`` (n, P, 2) when pixel positions ``pts`` are given (zeros otherwise).

    Each pair is one POT ``ot.emd`` on the two supports: the network simplex itself takes most
    of the time, and stacking a group of pairs as the blocks of one sparse LP solves slower than
    the pairs one by one. Each support and an image's cost rows are extracted once, and POT's
    marginal check and dual centring, which the costs do not need, are skipped."""
    emd = _pot().emd
    costs = np.empty((len(H), len(B)))
    shifts = np.zeros((len(H), len(B), 2))
    supports = [np.flatnonzero(b > 0) for b in B]
    targets = [(tgt, b[tgt]) for b, tgt in zip(B, supports, strict=True)]
    for i, h in enumerate(H):
        src = np.flatnonzero(h > 0)
        mass, rows = h[src], C[src]
        for k, (tgt, target_mass) in enumerate(targets):
            M = np.ascontiguousarray(rows[:, tgt])
            plan = emd(mass, target_mass, M, center_dual=False, check_marginals=False)
            costs[i, k] = np.vdot(plan, M)
            if pts is not None:
                shifts[i, k] = plan.sum(axis=0) @ pts[tgt] - plan.sum(axis=1) @ pts[src]
    return costs, shifts
