"""Unfolding problems: the 1-D toy generators and the 2-D jet-mass data of Craig, Faktor,
Nachman (§4.1)."""

from __future__ import annotations

import numbers
from importlib import resources

import numpy as np
from scipy.stats import norm
from sklearn.utils import Bunch, check_random_state

from .._core import InvalidArgumentError
from .._validation import check_int, check_option

__all__ = [
    "load_jet_mass",
    "make_unfolding_1d",
    "make_unfolding_1d_events",
    "make_unfolding_mc",
]


def _shift(x):
    # Detector map of Table 1: t(x) = x + sgn(x)/2.
    return x + 0.5 * np.sign(x)


def make_unfolding_1d(L=150, M=1, M_measured=3, *, L_measured=150, random_state=None):
    """The 1-D toy problem of Craig, Faktor, Nachman §4.1.1 with the reference code's conventions.

    Prior support ``gen = linspace(−1, 1, L)``; truth: stratified draws (¼, ½, rest of
    ``L_measured``) from N(0.75, sd 0.05), N(−0.75, sd 0.05), N(0, sd 0.05); detector
    ``y = x + sgn(x)/2 + N(0, variance 0.01)``; ``reco`` = M detector samples per gen point
    (response ``R_ik = 1/M``); ``measured`` = ``M_measured`` noise replicates of every truth point
    with uniform weights.

    With an integer ``random_state`` s the draws use the reference code's streams
    (``scipy.stats.norm.rvs`` with seeds s, s+1, s+2 for the truth components, s+3+r for measured
    replicate r, s+4+k for the response samples of gen point k), so seeds give the same problems
    as the paper's code; any other ``random_state`` (None, a RandomState) draws from one
    stream.

    Parameters
    ----------
    L : int, default=150
        Number of gen points (at least 2).
    M : int, default=1
        Detector samples per gen point.
    M_measured : int, default=3
        Noise replicates of every truth point in ``measured``.
    L_measured : int, default=150
        Number of truth points (at least 3).
    random_state : int, RandomState instance or None, default=None
        A non-negative int reproduces the reference code's draws (see above).

    Returns
    -------
    sklearn.utils.Bunch
        ``gen`` (L,), ``reco`` (L, M), ``measured`` (L_measured·M_measured,),
        ``measured_weight`` (uniform, summing to 1), ``truth`` (L_measured,), ``truth_weight``
        (uniform, summing to 1).
    """
    L = check_int(L, "L", 2)
    M = check_int(M, "M", 1)
    M_measured = check_int(M_measured, "M_measured", 1)
    L_measured = check_int(L_measured, "L_measured", 3)
    sd_noise = 0.1  # variance β = 0.01
    n1 = int(L_measured * 0.25)
    n2 = int(L_measured * 0.5)
    n3 = L_measured - n1 - n2
    gen = np.linspace(-1.0, 1.0, L)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        s = int(random_state)
        if s < 0:
            raise InvalidArgumentError(f"random_state: must be non-negative, got {s}")
        truth = np.concatenate(
            [
                norm.rvs(loc=0.75, scale=0.05, size=n1, random_state=s),
                norm.rvs(loc=-0.75, scale=0.05, size=n2, random_state=s + 1),
                norm.rvs(loc=0.0, scale=0.05, size=n3, random_state=s + 2),
            ]
        )
        measured = np.concatenate(
            [
                norm.rvs(loc=0.0, scale=sd_noise, size=L_measured, random_state=s + 3 + r)
                + _shift(truth)
                for r in range(M_measured)
            ]
        )
        reco = np.stack(
            [
                norm.rvs(loc=0.0, scale=sd_noise, size=M, random_state=s + 4 + k)
                + _shift(gen[k]) * np.ones(M)
                for k in range(L)
            ]
        )
    else:
        rng = check_random_state(random_state)
        truth = np.concatenate(
            [rng.normal(0.75, 0.05, n1), rng.normal(-0.75, 0.05, n2), rng.normal(0.0, 0.05, n3)]
        )
        measured = np.concatenate(
            [rng.normal(0.0, sd_noise, L_measured) + _shift(truth) for _ in range(M_measured)]
        )
        reco = rng.normal(0.0, sd_noise, (L, M)) + _shift(gen)[:, None]
    return Bunch(
        gen=gen,
        reco=reco,
        measured=measured,
        measured_weight=np.full(measured.size, 1.0 / measured.size),
        truth=truth,
        truth_weight=np.full(L_measured, 1.0 / L_measured),
    )


# Truth mixture of Table 1: (weight, centre), sd 0.05 each.
_MIXTURE = ((0.25, 0.75), (0.5, -0.75), (0.25, 0.0))
_TRUTH_SD = 0.05


def _truth_cdf(x):
    return sum(w * norm.cdf(x, loc=c, scale=_TRUTH_SD) for w, c in _MIXTURE)


def _efficiency_function(efficiency):
    if efficiency is None:
        return lambda x: np.ones_like(x)
    if callable(efficiency):
        return lambda x: np.clip(np.asarray(efficiency(x), dtype=float), 0.0, 1.0)
    value = float(efficiency)
    if not 0 < value <= 1:
        raise InvalidArgumentError(f"efficiency: must lie in (0, 1] or be callable, got {value}")
    return lambda x: np.full_like(x, value)


def make_unfolding_1d_events(
    n_events=2000,
    L=150,
    M=4,
    *,
    efficiency=None,
    fake_fraction=0.0,
    n_fake_mc=None,
    random_state=None,
):
    """The 1-D problem of Craig et al. (§4.1.1, Table 1) as an event sample with inefficiency and
    fakes, for pseudo-experiments.

    Data: a Poisson(``n_events``) number of true events drawn from the truth mixture of Table 1,
    each reconstructed with probability ``efficiency(x)`` (a callable, a number, or None for 1)
    at ``y = x + sgn(x)/2 + N(0, 0.1²)``, plus a Poisson number of fakes, uniform in y on
    [−1.6, 1.6], making up ``fake_fraction`` of the measured events on average. MC: gen points
    ``linspace(−1, 1, L)``, each with M detector samples, NaN where not reconstructed (same
    efficiency); ``n_fake_mc`` (default 5× the expected fakes) MC fakes with weights scaled to
    the expected number of fakes in the data.

    Parameters
    ----------
    n_events : int, default=2000
        Expected number of true events in the data.
    L : int, default=150
        Number of MC gen points (at least 2).
    M : int, default=4
        Detector samples per gen point.
    efficiency : callable, float or None, default=None
        Reconstruction probability: a function of the true value (clipped to [0, 1]), a
        constant in (0, 1], or ``None`` for 1.
    fake_fraction : float, default=0.0
        Expected share of fakes among the measured events, in [0, 1).
    n_fake_mc : int or None, default=None
        Number of MC fakes; ``None``: 5× the expected fakes of the data.
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    sklearn.utils.Bunch
        ``gen`` (L,), ``reco`` (L, M), ``measured`` with ``measured_weight`` (ones), ``fakes``
        and ``fake_weight`` (``None`` without fakes), ``truth`` (the true events), ``n_true``
        (their number), ``n_expected`` (= ``n_events``), ``truth_cdf`` (the truth's CDF, for
        expected bin contents ``n_events · ΔCDF``) and ``truth_mean`` (the truth's mean,
        −0.1875).
    """
    n_events = check_int(n_events, "n_events", 1)
    L = check_int(L, "L", 2)
    M = check_int(M, "M", 1)
    fake_fraction = float(fake_fraction)
    if not 0 <= fake_fraction < 1:
        raise InvalidArgumentError(f"fake_fraction: must lie in [0, 1), got {fake_fraction}")
    eff = _efficiency_function(efficiency)
    rng = check_random_state(random_state)
    n = rng.poisson(n_events)
    comp = rng.choice(3, size=n, p=[w for w, _ in _MIXTURE])
    truth = np.array([c for _, c in _MIXTURE])[comp] + rng.normal(0.0, _TRUTH_SD, n)
    reco_ok = rng.random(n) < eff(truth)
    measured = _shift(truth[reco_ok]) + rng.normal(0.0, 0.1, reco_ok.sum())
    grid = np.linspace(-1.0, 1.0, 2001)
    dens = np.diff(_truth_cdf(grid))
    mean_eff = float((eff(0.5 * (grid[1:] + grid[:-1])) * dens).sum() / dens.sum())
    expected_fakes = fake_fraction / (1 - fake_fraction) * n_events * mean_eff
    data_fakes = rng.uniform(-1.6, 1.6, rng.poisson(expected_fakes)) if fake_fraction else []
    gen = np.linspace(-1.0, 1.0, L)
    reco = _shift(gen)[:, None] + rng.normal(0.0, 0.1, (L, M))
    reco[rng.random((L, M)) >= eff(gen)[:, None]] = np.nan
    if fake_fraction:
        n_mc = 5 * max(round(expected_fakes), 1) if n_fake_mc is None else n_fake_mc
        fakes = rng.uniform(-1.6, 1.6, check_int(n_mc, "n_fake_mc", 1))
        fake_weight = np.full(fakes.size, expected_fakes / fakes.size)
    else:
        fakes, fake_weight = None, None
    measured = np.concatenate([measured, data_fakes])
    return Bunch(
        gen=gen,
        reco=reco,
        measured=measured,
        measured_weight=np.ones(measured.size),
        fakes=fakes,
        fake_weight=fake_weight,
        truth=truth,
        n_true=n,
        n_expected=n_events,
        truth_cdf=_truth_cdf,
        truth_mean=sum(w * c for w, c in _MIXTURE),
    )


# The realistic problem: the data's truth differs from the MC's (shifted and wider, as when a
# measurement is the reason for the analysis), per axis.
_MC_TRUTH = (0.0, 1.0)  # mean, sd
_DATA_TRUTH = ((0.2, 1.2), (-0.1, 0.9))  # (mean, sd) of axes 0 and 1
_PROPOSAL_SD = 1.3  # weighted MC: drawn from a wider proposal, weights undo it


def make_unfolding_mc(
    n_mc=100_000,
    n_data=25_000,
    *,
    n_dims=1,
    efficiency=(0.55, 0.9),
    smearing=0.3,
    fake_fraction=0.1,
    weighted=True,
    random_state=None,
):
    """An unfolding problem in a physics analysis's layout: one (gen, reco) pair per MC event,
    some events not reconstructed, event weights, fakes.

    MC truth N(0, 1) per axis; data truth N(0.2, 1.2²) (axis 0) and N(−0.1, 0.9²) (axis 1).
    Each event is reconstructed with probability ``ε(x) = lo + (hi − lo) Φ(x_0)`` (``efficiency =
    (lo, hi)``, rising with the first gen coordinate; ``None`` for 1) at ``y = x + N(0,
    smearing²)``; a lost event's reco row is NaN (OmniFold's placeholder). With ``weighted``, the
    MC is drawn from N(0, 1.3²) with weights that bring it back to N(0, 1) (a generator's event
    weights, 0.4–1.3), normalised to mean 1. Fakes (reco-only events, N(0, 1.5²) per axis) make
    up ``fake_fraction`` of the measured events on average: the data holds a Poisson number of
    them, the MC a sample of ``fake_fraction · n_mc`` with ``fake_weight`` scaled to the data's
    expected fakes. The data: a Poisson(``n_data``) number of true events, reconstructed and
    smeared alike, plus the fakes.

    Parameters
    ----------
    n_mc : int, default=100_000
        Number of MC events (at least 2).
    n_data : int, default=25_000
        Expected number of true events in the data.
    n_dims : {1, 2}, default=1
        Dimension ``d`` of the observable.
    efficiency : (float, float) or None, default=(0.55, 0.9)
        ``(lo, hi)`` with ``0 < lo ≤ hi ≤ 1`` of the rising efficiency, or ``None`` for 1.
    smearing : float, default=0.3
        Standard deviation of the detector's Gaussian smearing, per axis.
    fake_fraction : float, default=0.1
        Expected share of fakes among the measured events, in [0, 1).
    weighted : bool, default=True
        Draw the MC from the wider proposal with event weights (otherwise unweighted).
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    sklearn.utils.Bunch
        The arguments of ``fit``: ``measured`` with ``measured_weight`` (ones), ``gen`` (L,)
        or (L, d), ``reco`` (NaN where lost), ``gen_weight`` (``None`` unless weighted),
        ``fakes``, ``fake_weight`` (``None`` without fakes); and for checks: ``reco_all``
        (every event's smeared value, lost or not: the fully reconstructed MC of an oracle),
        ``efficiency`` (the callable ε on gen points), ``truth`` (the data's true events),
        ``n_true`` and ``n_expected`` (= ``n_data``), ``truth_cdf`` (per axis:
        ``truth_cdf(x, axis=0)``, for expected bin contents).
    """
    n_mc = check_int(n_mc, "n_mc", 2)
    n_data = check_int(n_data, "n_data", 1)
    d = check_int(n_dims, "n_dims", 1)
    if d > 2:
        raise InvalidArgumentError(f"n_dims: must be 1 or 2, got {d}")
    fake_fraction = float(fake_fraction)
    if not 0 <= fake_fraction < 1:
        raise InvalidArgumentError(f"fake_fraction: must lie in [0, 1), got {fake_fraction}")
    eff = _rising_efficiency(efficiency)
    rng = check_random_state(random_state)
    sd = _PROPOSAL_SD if weighted else _MC_TRUTH[1]
    gen = rng.normal(_MC_TRUTH[0], sd, (n_mc, d))
    gen_weight = None
    if weighted:
        ratio = norm.pdf(gen, *_MC_TRUTH) / norm.pdf(gen, 0.0, sd)
        gen_weight = ratio.prod(axis=1)
        gen_weight /= gen_weight.mean()
    reco_all = gen + rng.normal(0.0, smearing, gen.shape)
    reco = np.where((rng.random(n_mc) < eff(gen))[:, None], reco_all, np.nan)
    n_true = rng.poisson(n_data)
    truth = np.column_stack([rng.normal(m, s, n_true) for m, s in _DATA_TRUTH[:d]])
    seen = rng.random(n_true) < eff(truth)
    signal = truth[seen] + rng.normal(0.0, smearing, (int(seen.sum()), d))
    expected_signal = n_data * _mean_efficiency(eff, d)
    expected_fakes = fake_fraction / (1 - fake_fraction) * expected_signal
    data_fakes = rng.normal(0.0, 1.5, (rng.poisson(expected_fakes), d))
    if fake_fraction:
        fakes = rng.normal(0.0, 1.5, (max(round(fake_fraction * n_mc), 1), d))
        fake_weight = np.full(fakes.shape[0], expected_fakes / fakes.shape[0])
    else:
        fakes, fake_weight = None, None
    measured = np.vstack([signal, data_fakes])

    def squeeze(a):
        return a if a is None or d > 1 else a[:, 0]

    def truth_cdf(x, axis=0):
        return norm.cdf(x, *_DATA_TRUTH[axis])

    return Bunch(
        measured=squeeze(measured),
        measured_weight=np.ones(measured.shape[0]),
        gen=squeeze(gen),
        reco=squeeze(reco),
        gen_weight=gen_weight,
        fakes=squeeze(fakes),
        fake_weight=fake_weight,
        reco_all=squeeze(reco_all),
        efficiency=lambda x: eff(np.asarray(x, dtype=float).reshape(len(x), -1)),
        truth=squeeze(truth),
        n_true=n_true,
        n_expected=n_data,
        truth_cdf=truth_cdf,
    )


def _rising_efficiency(efficiency):
    """ε(x) = lo + (hi − lo) Φ(x_0) on (n, d) gen points, or 1."""
    if efficiency is None:
        return lambda x: np.ones(x.shape[0])
    lo, hi = (float(v) for v in efficiency)
    if not 0 < lo <= hi <= 1:
        raise InvalidArgumentError(
            f"efficiency: expected (low, high) with 0 < low <= high <= 1, got {efficiency!r}"
        )
    return lambda x: lo + (hi - lo) * norm.cdf(x[:, 0])


def _mean_efficiency(eff, d):
    """The data's mean efficiency (its truth along axis 0 decides it)."""
    m, s = _DATA_TRUTH[0]
    grid = np.linspace(m - 8 * s, m + 8 * s, 4001)
    dens = norm.pdf(grid, m, s)
    points = np.zeros((grid.size, d))
    points[:, 0] = grid
    return float((eff(points) * dens).sum() / dens.sum())


def _fix_outliers(block):
    """Reference code's outlier rule: |v| > |mean| + 5·std (over the block) → block mean."""
    block = block.copy()
    mean, std = np.mean(block), np.std(block)
    block[np.abs(block) > np.abs(mean) + 5 * np.abs(std)] = mean
    return block


_N_ROWS, _N_RECO = 1000, 12


def _load_files():
    base = resources.files("otinverse") / "data" / "jetmass"
    with resources.as_file(base / "jet_mass.txt") as p:
        mass = np.loadtxt(p)
    with resources.as_file(base / "jet_mass_SD.txt") as p:
        groomed = np.loadtxt(p)
    return mass, groomed


def load_jet_mass(L=100, L_measured=100, M=2, M_measured=3, *, truth_covariance="reference"):
    """The 2-D jet-mass unfolding problem of Craig, Faktor, Nachman §4.1.2 (Pythia + Delphes data).

    Coordinates: (jet mass, groomed jet mass). Rows 0..L−1 of the data are the prior support
    ``gen`` (L, 2) with ``reco`` (L, M, 2) from reco columns 1..M; the next ``L_measured`` rows are
    the truth with the measured points (L_measured·M_measured, 2) from reco columns
    1..M_measured, weighted ``measured_weight = truth_weight_k / M_measured``. Truth weights
    ∝ exp(−(x1−30)²/80 − (x2+5)²/4) as in the reference code (``truth_covariance="reference"``),
    or the paper's stated N((30, −5), diag(10, 2)) (``"paper"``). In the groomed coordinate,
    values with ``|v| > |mean| + 5·std`` (statistics over each block: response, measured) are
    replaced by the block mean, as in the reference code.

    The packaged copy holds 1000 rows and 12 reco columns (see data/jetmass/PROVENANCE.md).

    Parameters
    ----------
    L : int, default=100
        Number of gen points.
    L_measured : int, default=100
        Number of truth points (at most ``1000 − L``).
    M : int, default=2
        Detector samples per gen point (at most 12).
    M_measured : int, default=3
        Detector samples per truth point in ``measured`` (at most 12).
    truth_covariance : {"reference", "paper"}, default="reference"
        The truth weights' Gaussian: the reference code's or the paper's (see above).

    Returns
    -------
    sklearn.utils.Bunch
        ``gen`` (L, 2), ``reco`` (L, M, 2), ``measured`` (L_measured·M_measured, 2),
        ``measured_weight`` (summing to 1), ``truth`` (L_measured, 2), ``truth_weight``
        (summing to 1), ``feature_names``.
    """
    L = check_int(L, "L", 1)
    L_measured = check_int(L_measured, "L_measured", 1, maximum=_N_ROWS - L)
    M = check_int(M, "M", 1, maximum=_N_RECO)
    M_measured = check_int(M_measured, "M_measured", 1, maximum=_N_RECO)
    check_option(truth_covariance, "truth_covariance", {"reference", "paper"})
    mass, groomed = _load_files()
    rows_gen = slice(0, L)
    rows_truth = slice(L, L + L_measured)
    gen = np.column_stack([mass[rows_gen, 0], groomed[rows_gen, 0]])
    reco = np.stack(
        [mass[rows_gen, 1 : M + 1], _fix_outliers(groomed[rows_gen, 1 : M + 1])], axis=-1
    )
    truth = np.column_stack([mass[rows_truth, 0], groomed[rows_truth, 0]])
    meas = np.stack(
        [
            mass[rows_truth, 1 : M_measured + 1],
            _fix_outliers(groomed[rows_truth, 1 : M_measured + 1]),
        ],
        axis=-1,
    )
    var1 = 40.0 if truth_covariance == "reference" else 10.0
    tw = np.exp(-((truth[:, 0] - 30.0) ** 2) / (2 * var1) - (truth[:, 1] + 5.0) ** 2 / 4.0)
    tw /= tw.sum()
    return Bunch(
        gen=gen,
        reco=reco,
        measured=meas.reshape(-1, 2),
        measured_weight=np.repeat(tw / M_measured, M_measured),
        truth=truth,
        truth_weight=tw,
        feature_names=["jet_mass", "groomed_jet_mass"],
    )
