"""Entropic sparsification of images (Rawson & Hultgren), peak counting and the star-cluster
classifier built on it."""

import warnings

from ._sparsify import EntropicSparsifier, StarClusterClassifier, _sparsify_dense, count_peaks

__all__ = ["EntropicSparsifier", "StarClusterClassifier", "count_peaks"]


def __getattr__(name: str):
    # ``otinverse.sparsify.sparsify`` (on one measure and a dense cost) was never exported; it
    # forwards to the private function for one release.
    if name == "sparsify":
        warnings.warn(
            "otinverse.sparsify.sparsify is private and will be removed in the next release; "
            "use EntropicSparsifier",
            DeprecationWarning,
            stacklevel=2,
        )
        return _sparsify_dense
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
