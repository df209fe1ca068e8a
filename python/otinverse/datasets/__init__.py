"""Every problem generator and data loader of the package: unfolding toys and the jet-mass data,
star patches and groups, textures, micrographs, filaments and phantoms, image defects."""

from ._imaging import (
    add_defects,
    born_wolf_psf,
    load_micrograph,
    make_ellipse_phantoms,
    make_filaments,
)
from ._stars import make_star_groups, make_star_patches, star_psf
from ._textures import make_gaussian_texture, make_texture_denoising
from ._unfolding import (
    load_jet_mass,
    make_unfolding_1d,
    make_unfolding_1d_events,
    make_unfolding_mc,
)

__all__ = [
    "add_defects",
    "born_wolf_psf",
    "load_jet_mass",
    "load_micrograph",
    "make_ellipse_phantoms",
    "make_filaments",
    "make_gaussian_texture",
    "make_star_groups",
    "make_star_patches",
    "make_texture_denoising",
    "make_unfolding_1d",
    "make_unfolding_1d_events",
    "make_unfolding_mc",
    "star_psf",
]
