"""Imaging inverse problems: known forward operators, the penalised-least-squares baseline and
restoration with a Wasserstein patch prior (Mignon et al.)."""

from ._operators import (
    BlurSubsampleOperator,
    CartesianMaskOperator,
    ConvolutionOperator,
    LinearOperator,
    cartesian_line_mask,
    gaussian_kernel,
)
from ._pls import penalized_least_squares
from ._restore import WPPRestoration, WPPRestorer

__all__ = [
    "BlurSubsampleOperator",
    "CartesianMaskOperator",
    "ConvolutionOperator",
    "LinearOperator",
    "WPPRestoration",
    "WPPRestorer",
    "cartesian_line_mask",
    "gaussian_kernel",
    "penalized_least_squares",
]
