"""OmniFold's two-step classifier reweighting (Andreassen, Komiske, Metodiev, Nachman & Thaler,
PRL 124 (2020) 182001, Algorithm 1), with scikit-learn's ``HistGradientBoostingClassifier`` as
the classifier (as RooUnfold's BDT OmniFold does): the field's headline unbinned method, as a
baseline for the benches. Not part of the package.

Step 1 reweights the reconstructed MC to the data at detector level (the fakes, a known
background, keep their weights on the MC side); step 2 carries the pulled weights to every gen
event — reconstructed or not — through a classifier on the gen observables, so the lost events
get the weight of their neighbours in gen space. The result is a weight per MC event whose sum
estimates the number of true events.
"""

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

_CLIP = (1e-3, 1e3)  # bound the likelihood ratios where a classifier is nearly certain


def _ratio(x0, w0, x1, w1, seed):
    """Likelihood ratio p1/p0 at x0 from a classifier of weighted samples 0 and 1 (each class's
    weights normalised to the same total, so the odds are the density ratio)."""
    x = np.vstack([x0, x1])
    y = np.concatenate([np.zeros(len(x0)), np.ones(len(x1))])
    w = np.concatenate([w0 / w0.sum(), w1 / w1.sum()]) * len(x)
    clf = HistGradientBoostingClassifier(
        max_iter=100, early_stopping=True, validation_fraction=0.2, random_state=seed
    )
    clf.fit(x, y, sample_weight=w)
    p = np.clip(clf.predict_proba(x0)[:, 1], 1e-6, 1 - 1e-6)
    return np.clip(p / (1 - p), *_CLIP)


def omnifold(measured, gen, reco, gen_weight=None, fakes=None, fake_weight=None, n_iter=4, seed=0):
    """Unfolded weights of every MC event (gen (L,) or (L, d); reco with NaN rows for lost
    events), in events: their sum estimates the number of true events."""
    gen = gen.reshape(len(gen), -1)
    reco = reco.reshape(len(reco), -1)
    measured = measured.reshape(len(measured), -1)
    w = np.ones(len(gen)) if gen_weight is None else np.asarray(gen_weight, dtype=float)
    seen = ~np.isnan(reco[:, 0])
    n_fake = 0.0 if fake_weight is None else float(np.sum(fake_weight))
    # Start from the MC normalised so that its reconstructed signal holds the data's.
    w = w * (len(measured) - n_fake) / w[seen].sum()
    nu = np.ones(len(gen))
    for it in range(n_iter):
        # Step 1: reco-level MC (signal weighted by ν, plus the fakes) against the data.
        mc_x, mc_w = reco[seen], w[seen] * nu[seen]
        if fakes is not None:
            mc_x = np.vstack([mc_x, fakes.reshape(len(fakes), -1)])
            mc_w = np.concatenate([mc_w, fake_weight])
        r = _ratio(mc_x, mc_w, measured, np.ones(len(measured)), seed + 2 * it)
        pulled = nu.copy()
        pulled[seen] = nu[seen] * r[: seen.sum()]
        # The data's total fixes the normalisation: the fakes are known, the signal adapts.
        pulled[seen] *= (len(measured) - n_fake) / (w[seen] * pulled[seen]).sum()
        # Step 2: the pulled weights against the current ones, on the gen observables of all
        # events (the lost events keep ν in the numerator: no information from step 1).
        push = _ratio(gen, w * nu, gen, w * pulled, seed + 2 * it + 1)
        scale = (w * pulled).sum() / (w * nu).sum()
        nu = nu * push * scale
    return w * nu
