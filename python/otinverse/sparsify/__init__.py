"""Entropic sparsification of images (Rawson & Hultgren), peak counting and the star-cluster
classifier built on it."""

from ._sparsify import EntropicSparsifier, StarClusterClassifier, count_peaks
from ._sparsify import sparsify as sparsify

__all__ = ["EntropicSparsifier", "StarClusterClassifier", "count_peaks"]
