"""
OT unfolding with bootstrap uncertainties
=========================================

Unfolding with a Wasserstein loss (Craig, Faktor & Nachman) on an MC in a physics analysis's
layout: one (gen, reco) pair per event, events that are not reconstructed, event weights and
fakes (:func:`otinverse.datasets.make_unfolding_mc`). The unfolded weights are events; the
bootstrap replicas of the data give the statistical errors of any binning.
"""

import matplotlib.pyplot as plt
import numpy as np
from otinverse import OTUnfolder
from otinverse.datasets import make_unfolding_mc
from otinverse.unfolding import bootstrap

problem = make_unfolding_mc(20_000, 5_000, random_state=0)
mc = dict(
    gen=problem.gen,
    reco=problem.reco,
    gen_weight=problem.gen_weight,
    fakes=problem.fakes,
    fake_weight=problem.fake_weight,
)
boot = bootstrap(OTUnfolder(max_iter=10), problem.measured, n_replicas=8, progress=False, **mc)
bins = np.linspace(-3, 3, 13)
binned = boot.histogram(bins)
truth, _ = np.histogram(problem.truth, bins)
print(f"unfolded {binned.values.sum():.0f} events, truth {truth.sum()}")

centres = 0.5 * (bins[1:] + bins[:-1])
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.stairs(truth, bins, label="truth", color="k")
ax.errorbar(centres, binned.values, binned.std, fmt="o", label="OT unfolding ± bootstrap")
ax.hist(
    problem.measured[:, 0] if problem.measured.ndim == 2 else problem.measured,
    bins,
    histtype="step",
    ls="--",
    label="measured",
)
ax.set_xlabel("x")
ax.set_ylabel("events per bin")
ax.legend()
fig.tight_layout()
