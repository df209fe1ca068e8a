"""Optimal-transport classification of images (Barton & Tai) and its Bernoulli-mixture
prototypes."""

from ._classify import OTClassifier
from ._mixture import BernoulliMixture

__all__ = ["BernoulliMixture", "OTClassifier"]
