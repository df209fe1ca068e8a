"""
Richardson–Lucy: parity with pyunfold
=====================================

:func:`otinverse.richardson_lucy` is the binned iterative Bayesian unfolding (D'Agostini),
shaped like pyunfold's ``iterative_unfold``: the same arguments, the same central values and
the same propagated statistical errors.
"""

import matplotlib.pyplot as plt
import numpy as np
import otinverse
import pyunfold

rng = np.random.default_rng(0)
n_effects, n_causes = 14, 9
causes = np.linspace(0, 1, n_causes)
effects = np.linspace(0, 1, n_effects)
response = np.exp(-((effects[:, None] - causes[None, :]) ** 2) / (2 * 0.12**2))
efficiencies = rng.uniform(0.6, 0.95, n_causes)
response = response / response.sum(0) * efficiencies
truth = 2000 * np.exp(-((causes - 0.4) ** 2) / 0.05)
measured = rng.poisson(response @ truth).astype(float)

ours = otinverse.richardson_lucy(
    response,
    measured,
    10,
    efficiencies=efficiencies,
    cov_type="multinomial",
    response_err=np.zeros_like(response),
    efficiencies_err=np.zeros(n_causes),
    full_output=True,
)
ref = pyunfold.iterative_unfold(
    data=measured,
    data_err=np.sqrt(measured),
    response=response,
    response_err=np.zeros_like(response),
    efficiencies=efficiencies,
    efficiencies_err=np.zeros(n_causes),
    ts_stopping=-1.0,
    max_iter=10,
    cov_type="multinomial",
)
print("largest relative difference:", np.max(np.abs(ours.unfolded / ref["unfolded"] - 1)))

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(causes, truth, "k-", label="truth")
ax.errorbar(causes, ours.unfolded, np.sqrt(np.diag(ours.stat_cov)), fmt="o", label="otinverse")
ax.errorbar(causes, ref["unfolded"], ref["stat_err"], fmt="x", label="pyunfold")
ax.set_xlabel("cause bin centre")
ax.set_ylabel("events")
ax.legend()
fig.tight_layout()
