"""The iterative solver on a small simulated scan."""

import numpy as np
import pytest

from conftest import TINY
from ptycho_lib.contract import canonicalise
from ptycho_lib.iterative import Solver, SolverConfig
from ptycho_lib.metrics import compare
from ptycho_lib.physics import scale_probe
from ptycho_lib.simulate import simulate
from ptycho_lib.stitch import scanned_region


@pytest.fixture(scope="module")
def scan():
    return canonicalise(simulate(TINY), "tiny.npz")


def _solver(scan, start, iterations, **kw):
    probe = scale_probe(scan["probeGuess"].astype(np.complex128), float(scan["nphotons"]))
    return Solver(scan["diffraction"], probe, scan["ycoords"], scan["xcoords"], start,
                  SolverConfig(iterations=iterations, batch_size=8, **kw))


def test_epie_recovers_the_object_from_a_flat_start(scan):
    truth = scan["objectGuess"]
    region = scanned_region(scan["xcoords"], scan["ycoords"])
    solver = _solver(scan, np.ones(truth.shape), 40)
    obj = solver.run()
    score = compare(obj, truth, region)
    assert score["phase_ssim"] > 0.6 and score["amplitude_ssim"] > 0.5, score
    assert solver.history[-1] < 0.5 * solver.history[0]  # the data fit improves


def test_windows_outside_the_canvas_are_refused(scan):
    with pytest.raises(ValueError, match="outside the object canvas"):
        _solver(scan, np.ones((20, 20)), 1)
