"""Executes every notebook in its fast configuration (``OTINVERSE_FAST=1``, the shared
``run_notebook`` fixture) and checks what each must show: its result lines and its figures."""

import re

import pytest
from helpers import NOTEBOOKS, notebook_text, requires_micrographs

#: notebook → (modules it needs beyond the core, patterns its text output must contain, the
#: number of figures it must draw at least).
EXPECTED = {
    "unfolding_1d.ipynb": (
        (),
        (
            r"physics MC: OT \d+ events, RL \d+ events, true \d+",
            r"OT: final W2² = \S+",
            r"RL \d+ bins: final W2² = \S+",
            r"OT: <x> = \S+ +truth <x> = ",
        ),
        4,
    ),
    "jet_mass_2d.ipynb": (
        (),
        (r"M = \d+: OT \d+\.\d+; RL \d+: \d+\.\d+", r"<x1/x2>", r"\n +truth +\S+", r"\n +OT +\S+"),
        2,
    ),
    "unfolding_analysis.ipynb": (
        ("distributed",),
        (
            r"closure: χ² = \S+ / \d+ bins",
            r"bin \[GeV\] +truth +OT +RL",
            r"OT: N_true = \S+ ± \S+ \(data\)",
            r"RL: N_true = \S+ ± \S+ \(data\)",
        ),
        3,
    ),
    "star_clusters.ipynb": (
        ("skimage", "photutils"),
        tuple(
            rf"\| {re.escape(method)}[^|]* \| \d\.\d+ \|"
            for method in ("raw threshold", "Richardson-Lucy", "photutils", "OT sparsifier")
        ),
        2,
    ),
    "ot_classification.ipynb": (
        (),
        (
            "IR accuracy, class-mean prototypes",
            "DA accuracy",
            "20×20 canvas",
            r"otinverse \(supports\): +accuracy \d\.\d+, finite True",
        ),
        1,
    ),
    "wpp_superresolution.ipynb": (
        ("skimage",),
        (r"bicubic: PSNR +\d+\.\d+ dB", r"OT_eps,rho \(defects ref\): PSNR +\d+\.\d+ dB"),
        2,
    ),
    "suot_denoising.ipynb": (
        (),
        (r"noisy input: PSNR +\d+\.\d+ dB", r"OT_eps,rho: PSNR +\d+\.\d+ dB +mass on N2 patches"),
        1,
    ),
    "physics_analysis.ipynb": (
        ("uproot", "awkward", "hist", "mplhep", "distributed"),
        (
            r"OT: unfolded \d+ ± \d+ true events \(truth \d+\)",
            r"RL: unfolded \d+ ± \d+ true events \(truth \d+\)",
            "OT: χ²",
            "Richardson–Lucy: χ²",
            "TH1D",  # the unfolded hist and its covariance written back to ROOT
            "TH2D",
        ),
        1,
    ),
    "ot_cyclegan.ipynb": (
        ("jax", "flax", "optax", "skimage"),
        ("PSNR", "OT-cycleGAN − best zero-filled", r"Deconvolution, \d+ held-out images"),
        2,
    ),
}


def test_every_notebook_is_tested():
    assert set(EXPECTED) == {p.name for p in NOTEBOOKS.glob("*.ipynb")}


#: Notebooks that read the WPP micrographs, which wheels leave out.
NEEDS_MICROGRAPHS = {"wpp_superresolution.ipynb"}

#: Rough seconds of each fast run on a loaded two-core machine (for scheduling, longest first:
#: the OT-cycleGAN's time is JAX compiling its four training steps, whatever the problem size).
SECONDS = {"ot_cyclegan.ipynb": 60}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            n,
            marks=[pytest.mark.slow(SECONDS.get(n, 20))]
            + ([requires_micrographs] if n in NEEDS_MICROGRAPHS else []),
        )
        for n in sorted(EXPECTED)
    ],
)
def test_notebook_runs_and_shows_its_results(name, run_notebook):
    modules, patterns, figures = EXPECTED[name]
    for module in modules:
        pytest.importorskip(module)
    nb = run_notebook(name)
    text = notebook_text(nb)
    missing = [p for p in patterns if not re.search(p, text)]
    assert not missing, f"{name} does not show {missing}:\n{text[-3000:]}"
    drawn = sum(
        "image/png" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert drawn >= figures, f"{name} drew {drawn} figures, expected at least {figures}"
