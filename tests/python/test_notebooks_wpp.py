"""Executes the WPP notebooks (super-resolution, SUOT denoising) in their fast configuration."""

import pytest
from conftest import notebook_text


@pytest.mark.parametrize("name", ["wpp_superresolution.ipynb", "suot_denoising.ipynb"])
def test_notebook_runs(name, run_notebook):
    assert "PSNR" in notebook_text(run_notebook(name))
