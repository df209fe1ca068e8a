"""
Known-operator OT-cycleGAN (a short run)
========================================

:class:`otinverse.learn.OTCycleGANRestorer` (Sim et al.) learns to deblur from unpaired clean
images and blurred measurements, with the known blur as the generator's forward model. This is
a demonstration budget of a few updates (the notebook trains for 1000+); it needs the ``learn``
extra (JAX), and without it the example shows the data and the penalized least-squares baseline
alone.
"""

import importlib.util

import matplotlib.pyplot as plt
import numpy as np
from otinverse import penalized_least_squares
from otinverse.datasets import born_wolf_psf, make_filaments
from otinverse.imaging import ConvolutionOperator

blur = ConvolutionOperator(born_wolf_psf(15, 4.0), (32, 32))
noise = 0.01 * np.random.default_rng(0).normal(size=(8, 32, 32))
images = make_filaments(8, 32, random_state=0)
truth = make_filaments(8, 32, random_state=1)
measured = blur.apply(truth) + noise
baseline = penalized_least_squares(measured[0], blur, reg=0.01, regularizer="tv")

panels = [(truth[0], "truth"), (measured[0], "measured"), (baseline, "PLS (TV)")]
if importlib.util.find_spec("jax") is not None:
    from otinverse.learn import OTCycleGANRestorer

    gan = OTCycleGANRestorer(blur, patch_size=16, max_iter=3, random_state=0)
    gan.fit(measured, images)
    panels.append((gan.predict(measured[:1])[0], "OT-cycleGAN, 3 updates"))
else:
    print("JAX is not installed (pip install 'otinverse[learn]'): the GAN part is skipped.")

fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.4))
for ax, (image, title) in zip(axes, panels, strict=True):
    ax.imshow(image, cmap="gray")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
fig.tight_layout()
