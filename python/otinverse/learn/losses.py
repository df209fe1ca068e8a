"""Losses of the known-operator OT-cycleGAN (Sim et al., eqs. 19–21), as pure JAX functions.

With ``p = q = 1`` the PLS transport cost ``‖y − Hx‖ + ‖G(y) − x‖`` (eq. 9) dualises into the
cycle-consistency terms ``ρ‖x − G(Hx)‖₁ + σ‖y − H G(y)‖₁`` (eq. 21) plus Wasserstein critics
(eq. 20). When ``H`` is known the measurement critic ψ does not depend on the generator, so only
the image critic φ is trained. Norms are means over pixels (and the batch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["critic_loss", "cycle_losses", "gradient_penalty", "mean_abs"]


def mean_abs(residual, mask=None):
    """Mean of ``|residual|``; with a ``mask`` (broadcast over the batch), over its true pixels."""
    a = jnp.abs(residual)
    if mask is None:
        return a.mean()
    mask = jnp.broadcast_to(mask, a.shape)
    return (a * mask).sum() / mask.sum()


def cycle_losses(generate, forward, images, measured, *, image_mask=None, measured_mask=None):
    """``(mean|x − G(H x)|, mean|y − H G(y)|)`` for batches ``x = images``, ``y = measured``, and
    ``G(y)`` (one generator pass on the batch ``[H x; y]``)."""
    n = images.shape[0]
    generated = generate(jnp.concatenate([forward(images), measured]))
    image_cycle = mean_abs(images - generated[:n], image_mask)
    measured_cycle = mean_abs(measured - forward(generated[n:]), measured_mask)
    return image_cycle, measured_cycle, generated[n:]


def gradient_penalty(critic, real, fake, t):
    """``mean_i (‖∇φ(x̂_i)‖₂ − 1)²`` at ``x̂_i = t_i real_i + (1 − t_i) fake_i`` (Gulrajani et al.,
    2017). ``critic`` maps a batch to one value per sample, each depending on its own sample only,
    so the gradient of the sum gives every sample's gradient."""
    t = t.reshape((-1,) + (1,) * (real.ndim - 1))
    mixed = t * real + (1.0 - t) * fake
    grads = jax.grad(lambda z: critic(z).sum())(mixed)
    norms = jnp.sqrt((grads**2).reshape(grads.shape[0], -1).sum(axis=1) + 1e-12)
    return ((norms - 1.0) ** 2).mean()


def critic_loss(critic, real, fake, t, gp_weight):
    """Negated Wasserstein estimate plus the penalty: ``E φ(G(y)) − E φ(x) + γ GP`` (minimised);
    also returns the estimate ``E φ(x) − E φ(G(y))`` and the penalty."""
    distance = critic(real).mean() - critic(fake).mean()
    penalty = gradient_penalty(critic, real, fake, t)
    return -distance + gp_weight * penalty, (distance, penalty)
