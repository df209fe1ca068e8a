"""OT-cycleGAN with a known forward operator (Sim et al., ICLR 2020, §3 and §4, App. D).

The PLS transport cost ``c(x, y) = ‖y − H x‖ + ‖G(y) − x‖`` (eq. 9) between unpaired images
``x ~ μ`` and measurements ``y ~ ν`` dualises into a cycleGAN (eqs. 19–21). With ``H`` known one
generator ``G: y ↦ x`` and one Wasserstein critic ``φ`` on images suffice:

    min_G  ρ E‖x − G(Hx)‖₁ + σ E‖y − H G(y)‖₁ − α E φ(G(y))
    max_φ  E φ(x) − E φ(G(y)) − γ E(‖∇φ(x̂)‖₂ − 1)²

(the measurement critic ψ of eq. 20 does not depend on ``G`` when ``H`` is fixed). ``ρ, σ, α``
are ``image_cycle_weight``, ``measurement_cycle_weight`` and ``adversarial_weight``; the paper's
ρ = σ = 0.5 with GAN factors 1 − ρ = 1 − σ = 0.5 is the equal weighting (1, 1, 1) up to the
learning rate. The generator is a small U-Net on an image-domain view of ``y`` (``y`` itself for a
blur, the normalised back-projection ``Hᵀy / Hᵀ1`` for blur + subsampling, the complex zero-filled
image as two channels for MRI) plus that view as a residual; Adam with β = (0.5, 0.9) and
``n_critic`` critic steps per generator step as in App. D.
"""

from __future__ import annotations

import functools
import numbers
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._core import InvalidArgumentError
from .._validation import ValidatedParams, as_float_array
from ..imaging import (
    BlurSubsampleOperator,
    CartesianMaskOperator,
    ConvolutionOperator,
    LinearOperator,
)
from .losses import critic_loss, cycle_losses, mean_abs
from .networks import PatchCritic, UNet

__all__ = ["OTCycleGANRestorer", "SupervisedUNetRestorer"]

_PREDICT_CHUNK = 8


class _Generator:
    """``G(y)``: the U-Net on the image-domain view of ``y`` for one operator geometry."""

    def __init__(self, operator: LinearOperator, unet: UNet):
        self.operator, self.unet, self.multiple = operator, unet, 2**unet.depth
        self._norm = None
        if isinstance(operator, BlurSubsampleOperator):
            hits = operator.adjoint(np.ones(operator.output_shape))
            self._norm = np.maximum(hits, 1e-3 * hits.max()).astype(np.float32)

    def view(self, y):
        """Image-domain channels ``(B, h, w, C)`` of measurements ``(B, *output_shape)``."""
        op = self.operator
        if isinstance(op, CartesianMaskOperator):
            return y
        if self._norm is not None:
            return (op._adjoint(y, jnp) / self._norm)[..., None]
        if tuple(op.output_shape) == tuple(op.input_shape):
            return y[..., None]
        return op._adjoint(y, jnp)[..., None]

    def __call__(self, params, y):
        view = self.view(y)
        h, w = view.shape[1:3]
        pad = ((0, 0), (0, -h % self.multiple), (0, -w % self.multiple), (0, 0))
        out = self.unet.apply(params, jnp.pad(view, pad, mode="reflect"))[:, :h, :w, 0]
        return out + view[..., 0]


@functools.lru_cache(maxsize=16)
def _compiled_generator(operator, width, depth):
    """Jitted ``G(params, y)``, cached per operator object and U-Net shape so that repeated
    ``predict`` calls compile once."""
    return jax.jit(_Generator(operator, UNet(width, depth)).__call__)


@functools.lru_cache(maxsize=16)
def _compiled_init(network):
    """Jitted ``network.init``, cached per network (Flax modules compare by their fields): the
    supervised and the OT-cycleGAN generator of one geometry, or two critics of one shape,
    compile their initialisation once."""
    return jax.jit(network.init)


def _sample(data, key, batch, patch):
    """``batch`` items of ``data`` (without replacement when possible), cropped at random to
    ``patch`` (whole when ``None``); returns the crops and ``(indices, rows, cols)``."""
    k_idx, k_r, k_c = jax.random.split(key, 3)
    n = data.shape[0]
    if batch <= n:
        idx = jax.random.permutation(k_idx, n)[:batch]
    else:
        idx = jax.random.choice(k_idx, n, (batch,))
    if patch is None:
        return data[idx], (idx, None, None)
    rows = jax.random.randint(k_r, (batch,), 0, data.shape[1] - patch[0] + 1)
    cols = jax.random.randint(k_c, (batch,), 0, data.shape[2] - patch[1] + 1)
    return _crop(data[idx], rows, cols, patch), (idx, rows, cols)


def _crop(items, rows, cols, patch):
    def one(item, r, c):
        start = (r, c) + (0,) * (item.ndim - 2)
        return jax.lax.dynamic_slice(item, start, tuple(patch) + item.shape[2:])

    return jax.vmap(one)(items, rows, cols)


class _UNetRestorerBase(ValidatedParams, BaseEstimator):
    """Shared machinery: validation (a bad hyper-parameter raises
    :class:`otinverse.InvalidArgumentError` naming it, as every estimator of the package), training
    geometry, the loop, predict, save/load."""

    _parameter_constraints: ClassVar[dict] = {
        "operator": [LinearOperator],
        "unet_width": [Interval(numbers.Integral, 1, None, closed="left")],
        "unet_depth": [Interval(numbers.Integral, 0, 6, closed="both")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "lr_schedule": [StrOptions({"constant", "linear"})],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "patch_size": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------------------- inputs
    @staticmethod
    def _check_stack(arr, name, shape):
        arr = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
        if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != tuple(shape):
            raise InvalidArgumentError(
                f"{name}: expected a stack of shape (n, {', '.join(map(str, shape))}) for the "
                f"operator, got shape {arr.shape}"
            )
        return np.asarray(as_float_array(arr, name, ndim=arr.ndim), dtype=np.float32)

    def _geometry(self):
        """(training operator, image patch shape or None, measurement patch shape or None,
        masks of the (image, measurement) cycle terms or None, image offset stride)."""
        op, p = self.operator, self.patch_size
        if p is None:
            return op, None, None, (None, None), 1
        if isinstance(op, CartesianMaskOperator):
            raise InvalidArgumentError(
                "patch_size: the Fourier line-mask operator acts on whole images; use None"
            )
        if p > min(op.input_shape):
            raise InvalidArgumentError(f"patch_size: {p} exceeds the image shape {op.input_shape}")
        patch_op = op.with_input_shape((p, p))
        if isinstance(op, BlurSubsampleOperator):
            k, s = op.kernel.shape[0], op.stride
            if (p - k) % s or op.kernel.shape[0] != op.kernel.shape[1]:
                raise InvalidArgumentError(
                    f"patch_size: must be {k} + {s}·m so that measurement patches tile it exactly"
                )
            return patch_op, (p, p), patch_op.output_shape, (None, None), s
        if isinstance(op, ConvolutionOperator):
            # A measured crop's border depends on pixels outside it, so ‖y − H G(y)‖ leaves it
            # out; ‖x − G(Hx)‖ keeps it (H on a clean crop has the zero boundary of whole images).
            mask = np.zeros((p, p), np.float32)
            m0, m1 = op.margin
            mask[m0 : p - m0, m1 : p - m1] = 1.0
            return patch_op, (p, p), (p, p), (None, mask), 1
        return patch_op, (p, p), patch_op.output_shape, (None, None), 1

    def _key(self):
        rs = self.random_state
        if isinstance(rs, numbers.Integral):
            seed = int(rs)
        else:
            seed = int(check_random_state(rs).randint(0, 2**31 - 1))
        # The "rbg" generator compiles several times faster than threefry on CPU (Flax's
        # initialisers draw from many keys); it is reproducible for a given JAX version and device.
        return jax.random.key(seed, impl="rbg")

    def _unet(self):
        return UNet(int(self.unet_width), int(self.unet_depth))

    def _optimizer(self, n_updates):
        lr = float(self.learning_rate)
        if self.lr_schedule == "constant":
            schedule = lr
        else:  # constant for the first half, then linearly to zero (Sim et al., App. D.2.1)
            half = max(n_updates // 2, 1)
            schedule = optax.join_schedules(
                [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, n_updates - half)],
                [half],
            )
        return optax.adam(schedule, b1=0.5, b2=0.9)

    # ------------------------------------------------------------------------------- loop
    def _run(self, step, carry, data, n_iter, names):
        """Runs ``carry, metrics = step(carry, key, *data)`` ``n_iter`` times."""
        key = jax.random.fold_in(self._key(), 1)
        history = {name: np.empty(n_iter) for name in names}
        bar = tqdm(range(n_iter), disable=not self.verbose, desc=type(self).__name__)
        for it in bar:
            carry, metrics = step(carry, jax.random.fold_in(key, it), *data)
            values = jax.device_get(metrics)
            for name in names:
                history[name][it] = float(values[name])
            if self.verbose and (it % 10 == 0 or it == n_iter - 1):
                bar.set_postfix({name: f"{history[name][it]:.4f}" for name in names})
        return carry, history

    def _finish(self, generator_params, history, critic_params=None):
        to_numpy = lambda tree: jax.tree.map(np.asarray, tree)  # noqa: E731
        self.generator_params_ = to_numpy(generator_params)
        if critic_params is not None:
            self.critic_params_ = to_numpy(critic_params)
        self.history_ = history
        self.n_iter_ = int(self.max_iter)
        return self

    # ------------------------------------------------------------------------------- predict
    def predict(self, measured):
        """Restored images for one measurement of ``operator.output_shape`` or a stack of them."""
        check_is_fitted(self, "generator_params_")
        shape = tuple(self.operator.output_shape)
        arr = measured if isinstance(measured, np.ndarray) else np.asarray(measured)
        single = arr.ndim == len(shape)
        stack = self._check_stack(arr[None] if single else arr, "measured", shape)
        run = _compiled_generator(self.operator, int(self.unet_width), int(self.unet_depth))
        params = self.generator_params_
        out = []
        for start in range(0, stack.shape[0], _PREDICT_CHUNK):
            chunk = stack[start : start + _PREDICT_CHUNK]
            n = chunk.shape[0]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], _PREDICT_CHUNK - n, axis=0)])
            out.append(np.asarray(run(params, jnp.asarray(padded)))[:n])
        images = np.concatenate(out).astype(np.float64)
        return images[0] if single else images

    # ------------------------------------------------------------------------------- save/load
    def _trees(self):
        trees = {"generator": self.generator_params_}
        if getattr(self, "critic_params_", None) is not None:
            trees["critic"] = self.critic_params_
        return trees

    def save_weights(self, path):
        """Writes the trained weights and ``history_`` to an ``.npz`` file at ``path``."""
        check_is_fitted(self, "generator_params_")
        arrays = {}
        for name, tree in self._trees().items():
            for key, value in traverse_util.flatten_dict(tree, sep="/").items():
                arrays[f"{name}/{key}"] = np.asarray(value)
        for name, values in self.history_.items():
            arrays[f"history/{name}"] = values
        np.savez(path, **arrays)

    def load_weights(self, path):
        """Loads weights written by :meth:`save_weights` into this estimator, whose
        hyper-parameters must give networks of the same shapes. Returns ``self`` (fitted)."""
        self._validate_params()
        expected = self._initial_trees()
        with np.load(path) as data:
            stored = {key: data[key] for key in data.files}
        trees = {}
        for name, tree in expected.items():
            flat = traverse_util.flatten_dict(tree, sep="/")
            loaded = {}
            for key, value in flat.items():
                got = stored.get(f"{name}/{key}")
                if got is None or got.shape != value.shape:
                    raise InvalidArgumentError(
                        f"path: {name} weight {key!r} is missing or has another shape than this "
                        "estimator's networks (check unet_width, unet_depth, critic_* and operator)"
                    )
                loaded[key] = got
            trees[name] = traverse_util.unflatten_dict(loaded, sep="/")
        history = {k[len("history/") :]: v for k, v in stored.items() if k.startswith("history/")}
        return self._finish(trees["generator"], history, trees.get("critic"))

    def _init_generator(self, key):
        generator = _Generator(self.operator, self._unet())
        dummy = jnp.zeros((1, *self.operator.output_shape), jnp.float32)
        view = generator.view(dummy)
        m = generator.multiple
        shape = (1, -view.shape[1] % m + view.shape[1], -view.shape[2] % m + view.shape[2])
        return _compiled_init(generator.unet)(key, jnp.zeros((*shape, view.shape[3]), jnp.float32))


class OTCycleGANRestorer(_UNetRestorerBase):
    """Unsupervised restoration by the known-operator OT-cycleGAN of Sim et al. (ICLR 2020).

    ``fit(measured, images)`` takes **unpaired** stacks: measurements ``y`` of
    ``operator.output_shape`` and clean images ``x`` of ``operator.input_shape`` (disjoint sets,
    any sizes). ``predict(measured)`` returns ``G(y)``.

    Parameters
    ----------
    operator : otinverse.imaging.LinearOperator
        The known forward model ``H`` (:class:`~otinverse.imaging.ConvolutionOperator`,
        :class:`~otinverse.imaging.BlurSubsampleOperator`,
        :class:`~otinverse.imaging.CartesianMaskOperator`).
    unet_width, unet_depth : int, default=16, 2
        Channels of the U-Net's first level (doubling per level) and number of poolings.
    critic_width, critic_depth : int, default=16, 3
        Channels of the patch critic's first layer and number of stride-2 layers.
    n_critic : int, default=5
        Critic updates per generator update (App. D.1).
    gp_weight : float, default=10.0
        γ of the gradient penalty (Gulrajani et al., 2017).
    image_cycle_weight, measurement_cycle_weight : float, default=1.0
        ρ on ``‖x − G(Hx)‖₁`` and σ on ``‖y − H G(y)‖₁`` (eq. 21; pixel means).
    adversarial_weight : float, default=1.0
        α on the generator's ``−E φ(G(y))``.
    learning_rate : float, default=1e-4
        Adam's step (β = (0.5, 0.9)) for both networks.
    lr_schedule : {"constant", "linear"}, default="constant"
        ``"linear"``: constant for the first half, then linearly to zero (App. D.2.1).
    batch_size : int, default=4
    patch_size : int or None, default=None
        Side of random square image crops (``None``: whole images). For a blur the measurement
        cycle term leaves out a border of half the PSF (it depends on pixels outside the crop);
        for blur + subsampling it must be ``k + s·m``; the MRI operator needs whole images.
    max_iter : int, default=1000
        Generator updates.
    random_state : int, RandomState or None
        Seeds the initialisation and the sampling; an int makes ``fit`` reproducible.
    verbose : int, default=0
        Shows a tqdm bar with the losses.

    Attributes
    ----------
    generator_params_, critic_params_ : dict
        Trained Flax parameters (NumPy arrays).
    history_ : dict of ndarray
        Per generator update: ``"image_cycle"``, ``"measurement_cycle"``, ``"adversarial"``,
        ``"generator"`` (total), ``"wasserstein"`` (critic's ``E φ(x) − E φ(G(y))``) and
        ``"gradient_penalty"`` (last critic step); the cycle terms are evaluated before the update.
    n_iter_ : int
    """

    _parameter_constraints: ClassVar[dict] = {
        **_UNetRestorerBase._parameter_constraints,
        "critic_width": [Interval(numbers.Integral, 1, None, closed="left")],
        "critic_depth": [Interval(numbers.Integral, 1, 6, closed="both")],
        "n_critic": [Interval(numbers.Integral, 1, None, closed="left")],
        "gp_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "image_cycle_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "measurement_cycle_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "adversarial_weight": [Interval(numbers.Real, 0, None, closed="left")],
    }

    _HISTORY = (
        "image_cycle",
        "measurement_cycle",
        "adversarial",
        "generator",
        "wasserstein",
        "gradient_penalty",
    )

    def __init__(
        self,
        operator,
        *,
        unet_width=16,
        unet_depth=2,
        critic_width=16,
        critic_depth=3,
        n_critic=5,
        gp_weight=10.0,
        image_cycle_weight=1.0,
        measurement_cycle_weight=1.0,
        adversarial_weight=1.0,
        learning_rate=1e-4,
        lr_schedule="constant",
        batch_size=4,
        patch_size=None,
        max_iter=1000,
        random_state=None,
        verbose=0,
    ):
        self.operator = operator
        self.unet_width = unet_width
        self.unet_depth = unet_depth
        self.critic_width = critic_width
        self.critic_depth = critic_depth
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.image_cycle_weight = image_cycle_weight
        self.measurement_cycle_weight = measurement_cycle_weight
        self.adversarial_weight = adversarial_weight
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.patch_size = patch_size
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose

    def _critic(self):
        return PatchCritic(int(self.critic_width), int(self.critic_depth))

    def _initial_trees(self):
        k_g, k_c = jax.random.split(self._key())
        shape = self._geometry()[1] or self.operator.input_shape
        critic = _compiled_init(self._critic())(k_c, jnp.zeros((1, *shape, 1), jnp.float32))
        return {"generator": self._init_generator(k_g), "critic": critic}

    def fit(self, measured, images):
        """Trains on unpaired ``measured`` ``(n, *output_shape)`` and ``images``
        ``(m, *input_shape)``."""
        self._validate_params()
        measured = self._check_stack(measured, "measured", self.operator.output_shape)
        images = self._check_stack(images, "images", self.operator.input_shape)
        train_op, x_patch, y_patch, (x_mask, y_mask), _ = self._geometry()
        generator = _Generator(train_op, self._unet())
        critic = self._critic()
        trees = self._initial_trees()
        g_opt = self._optimizer(int(self.max_iter))
        c_opt = self._optimizer(int(self.max_iter) * int(self.n_critic))
        b, gp_w = int(self.batch_size), float(self.gp_weight)
        weights = (
            float(self.image_cycle_weight),
            float(self.measurement_cycle_weight),
            float(self.adversarial_weight),
        )

        def phi(params):
            return lambda z: critic.apply(params, z[..., None])

        def critic_update(g_params, carry, key, x_all, y_all):
            c_params, c_state = carry
            k_x, k_y, k_t = jax.random.split(key, 3)
            x, _ = _sample(x_all, k_x, b, x_patch)
            y, _ = _sample(y_all, k_y, b, y_patch)
            fake = jax.lax.stop_gradient(generator(g_params, y))
            t = jax.random.uniform(k_t, (b,))
            grads, (dist, pen) = jax.grad(
                lambda c: critic_loss(phi(c), x, fake, t, gp_w), has_aux=True
            )(c_params)
            updates, c_state = c_opt.update(grads, c_state, c_params)
            return (optax.apply_updates(c_params, updates), c_state), (dist, pen)

        def generator_objective(g_params, c_params, x, y):
            generate = lambda m: generator(g_params, m)  # noqa: E731
            forward = lambda z: train_op._forward(z, jnp)  # noqa: E731
            ic, mc, g_y = cycle_losses(
                generate, forward, x, y, image_mask=x_mask, measured_mask=y_mask
            )
            adv = -phi(c_params)(g_y).mean()
            total = weights[0] * ic + weights[1] * mc + weights[2] * adv
            return total, (ic, mc, adv)

        @jax.jit
        def step(carry, key, x_all, y_all):
            g_params, g_state, c_params, c_state = carry
            k_c, k_x, k_y = jax.random.split(key, 3)
            (c_params, c_state), (dist, pen) = jax.lax.scan(
                lambda cc, k: critic_update(g_params, cc, k, x_all, y_all),
                (c_params, c_state),
                jax.random.split(k_c, int(self.n_critic)),
            )
            x, _ = _sample(x_all, k_x, b, x_patch)
            y, _ = _sample(y_all, k_y, b, y_patch)
            (total, (ic, mc, adv)), grads = jax.value_and_grad(generator_objective, has_aux=True)(
                g_params, c_params, x, y
            )
            updates, g_state = g_opt.update(grads, g_state, g_params)
            g_params = optax.apply_updates(g_params, updates)
            metrics = {
                "image_cycle": ic,
                "measurement_cycle": mc,
                "adversarial": adv,
                "generator": total,
                "wasserstein": dist[-1],
                "gradient_penalty": pen[-1],
            }
            return (g_params, g_state, c_params, c_state), metrics

        g0, c0 = trees["generator"], trees["critic"]
        carry = (g0, g_opt.init(g0), c0, c_opt.init(c0))
        data = (jnp.asarray(images), jnp.asarray(measured))
        carry, history = self._run(step, carry, data, int(self.max_iter), self._HISTORY)
        return self._finish(carry[0], history, carry[2])


class SupervisedUNetRestorer(_UNetRestorerBase):
    """The same generator as :class:`OTCycleGANRestorer` trained on **paired** data with the
    loss ``mean|G(y) − x|`` (the supervised upper bound of Sim et al., Tables 1–2).

    ``fit(measured, images)`` takes pairs (``measured[i]`` is the measurement of ``images[i]``);
    ``predict(measured)`` returns ``G(y)``.

    Parameters
    ----------
    operator : otinverse.imaging.LinearOperator
        The known forward model ``H`` (:class:`~otinverse.imaging.ConvolutionOperator`,
        :class:`~otinverse.imaging.BlurSubsampleOperator`,
        :class:`~otinverse.imaging.CartesianMaskOperator`); the generator works on the
        image-domain view of ``y`` it defines.
    unet_width : int, default=16
        Channels of the U-Net's first level (doubling per level).
    unet_depth : int, default=2
        Number of poolings of the U-Net (0 to 6).
    learning_rate : float, default=1e-4
        Adam's step (β = (0.5, 0.9), as for the OT-cycleGAN).
    lr_schedule : {"constant", "linear"}, default="constant"
        ``"linear"``: constant for the first half, then linearly to zero (Sim et al., App. D.2.1).
    batch_size : int, default=4
        Pairs per update.
    patch_size : int or None, default=None
        Side of random square crops taken at the same place in an image and its measurement
        (``None``: whole images); for blur + subsampling it must be ``k + s·m``, the MRI operator
        needs whole images.
    max_iter : int, default=1000
        Generator updates.
    random_state : int, RandomState or None, default=None
        Seeds the initialisation and the sampling; an int makes ``fit`` reproducible.
    verbose : int, default=0
        Shows a tqdm bar with the loss.

    Attributes
    ----------
    generator_params_ : dict
        Trained Flax parameters of the U-Net (NumPy arrays).
    history_ : dict of ndarray
        ``"l1"``: the training loss ``mean|G(y) − x|`` of each update's batch, shape
        ``(max_iter,)``.
    n_iter_ : int
        Updates run (``max_iter``).
    """

    def __init__(
        self,
        operator,
        *,
        unet_width=16,
        unet_depth=2,
        learning_rate=1e-4,
        lr_schedule="constant",
        batch_size=4,
        patch_size=None,
        max_iter=1000,
        random_state=None,
        verbose=0,
    ):
        self.operator = operator
        self.unet_width = unet_width
        self.unet_depth = unet_depth
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.patch_size = patch_size
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose

    def _initial_trees(self):
        return {"generator": self._init_generator(jax.random.split(self._key())[0])}

    def fit(self, measured, images):
        """Trains on pairs: ``measured[i]`` is the measurement of ``images[i]``."""
        self._validate_params()
        measured = self._check_stack(measured, "measured", self.operator.output_shape)
        images = self._check_stack(images, "images", self.operator.input_shape)
        if measured.shape[0] != images.shape[0]:
            raise InvalidArgumentError(
                f"images: {images.shape[0]} images for {measured.shape[0]} measurements; "
                "supervised training needs pairs"
            )
        train_op, x_patch, y_patch, _, stride = self._geometry()
        generator = _Generator(train_op, self._unet())
        opt = self._optimizer(int(self.max_iter))
        b = int(self.batch_size)

        def objective(params, y, x):
            return mean_abs(generator(params, y) - x)

        @jax.jit
        def step(carry, key, x_all, y_all):
            params, state = carry
            y, (idx, rows, cols) = _sample(y_all, key, b, y_patch)
            x = x_all[idx]
            if x_patch is not None:  # the image crop under the measurement crop
                x = _crop(x, stride * rows, stride * cols, x_patch)
            loss, grads = jax.value_and_grad(objective)(params, y, x)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), {"l1": loss}

        params = self._initial_trees()["generator"]
        data = (jnp.asarray(images), jnp.asarray(measured))
        carry = (params, opt.init(params))
        carry, history = self._run(step, carry, data, int(self.max_iter), ("l1",))
        return self._finish(carry[0], history)
