"""
Star clusters: sparsifying sky patches
======================================

Rawson & Hultgren's entropic sparsification (:class:`otinverse.EntropicSparsifier`) turns a
blurred patch into a few point sources; :class:`otinverse.StarClusterClassifier` counts them to
tell an isolated star (0) from a blend of 2–5 sources (1), with its threshold and sparsity
chosen by cross-validation.
"""

import matplotlib.pyplot as plt
import numpy as np
from otinverse import EntropicSparsifier, StarClusterClassifier, make_star_groups

data = make_star_groups(60, bands=3, size=24, random_state=0)
clf = StarClusterClassifier(
    sparsifier=EntropicSparsifier(reg=2.0, solver="majorize", max_iter=200), sparsity=[0.1, 0.5]
).fit(data.data[:40], data.target[:40])
proba = clf.predict_proba(data.data[40:])[:, 1]
accuracy = np.mean((proba > 0.5) == data.target[40:])
print(f"held-out accuracy on {len(proba)} patches: {accuracy:.2f}")

fig, axes = plt.subplots(1, 4, figsize=(8, 2.4))
for ax, i in zip(axes, range(40, 44), strict=True):
    image = data.data[i].reshape(3, 24, 24).sum(0)
    ax.imshow(image, cmap="magma")
    ax.set_title(f"label {data.target[i]}, p = {proba[i - 40]:.2f}", fontsize=8)
    ax.axis("off")
fig.tight_layout()
