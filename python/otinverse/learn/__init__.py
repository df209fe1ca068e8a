"""Learned inversion with a known forward operator (the optional ``learn`` extra, JAX/Flax/Optax).

* :class:`OTCycleGANRestorer`: the OT-cycleGAN of Sim et al. (ICLR 2020) with a known ``H``, one
  generator and one Wasserstein critic, trained on unpaired measurements and images.
* :class:`SupervisedUNetRestorer`: the same generator trained on pairs (an upper bound).
* :mod:`otinverse.learn.losses`: the cycle, critic and gradient-penalty losses.
* :func:`sinkhorn_loss`, :func:`sinkhorn_divergence`: entropic OT and the debiased Sinkhorn
  divergence of weighted point clouds, differentiable in JAX (points and weights), solved by
  the Rust core and differentiated by the envelope theorem.

Install with ``pip install "otinverse[learn]"``. ``import otinverse`` does not import this
subpackage. JAX picks its CPU thread count when it is first imported; to train on one core set
``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"`` before that.
"""

try:
    import flax  # noqa: F401
    import jax  # noqa: F401
    import optax  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "otinverse.learn needs the optional 'learn' extra (JAX, Flax, Optax): "
        'pip install "otinverse[learn]"'
    ) from exc

from .cyclegan import OTCycleGANRestorer, SupervisedUNetRestorer
from .sinkhorn_loss import sinkhorn_divergence, sinkhorn_loss

__all__ = [
    "OTCycleGANRestorer",
    "SupervisedUNetRestorer",
    "sinkhorn_divergence",
    "sinkhorn_loss",
]
