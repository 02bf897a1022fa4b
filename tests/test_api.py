"""The Python entry point: a scan given as arrays, reconstructed with a bundle, gives
what the recon stage's script gives for the same data written as a file."""

import numpy as np
import pytest
import torch

import infer as infer_script
from conftest import TINY
from ptycho_lib.api import reconstruct_arrays
from ptycho_lib.bundle import write_bundle
from ptycho_lib.config import ModelConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.io import InputError, write_npz
from ptycho_lib.model import PINN
from ptycho_lib.reconstruction import Reconstruction
from ptycho_lib.simulate import simulate


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    module = PINN(torch.ones(32, 32, dtype=torch.complex64), 1e5, 0.5, ModelConfig(width=8), gridsize=2)
    path = tmp_path / "wts.h5.zip"
    write_bundle(path, module.state_dict(), {"architecture": module.net.architecture(), "gridsize": 2})
    return path


def test_arrays_reconstruct_as_the_file_does(tmp_path, bundle):
    raw = simulate(TINY)
    counts = np.moveaxis(raw["diff3d"], -1, 0)  # (M, N, N)
    rec = reconstruct_arrays(bundle, counts, raw["probeGuess"], raw["xcoords"], raw["ycoords"])
    arrays = {k: raw[k] for k in ("diff3d", "probeGuess", "xcoords", "ycoords")}
    write_npz(tmp_path / "scan.npz", canonicalise(arrays, "scan.npz"))
    infer_script.main(["--model-path", str(bundle), "--test-data", str(tmp_path / "scan.npz"),
                       "--output", str(tmp_path / "rec.npz"), "--quiet"])
    from_file = Reconstruction.load(tmp_path / "rec.npz")
    assert rec.object.shape == from_file.object.shape and np.abs(rec.object).max() > 0
    np.testing.assert_array_equal(rec.object, from_file.object)
    np.testing.assert_array_equal(rec.x, from_file.x)


def test_bad_arrays_get_a_one_line_error(bundle):
    raw = simulate(TINY)
    counts = np.moveaxis(raw["diff3d"], -1, 0)
    with pytest.raises(InputError, match="arrays"):
        reconstruct_arrays(bundle, counts[:, :16, :16], raw["probeGuess"], raw["xcoords"], raw["ycoords"])
