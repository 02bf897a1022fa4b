"""The slow modulus from the patterns' totals and the slow phase from their centres of
mass (ptycho_lib.centroids), which the infer stage applies to the network's stitched
object."""

import dataclasses

import numpy as np
import pytest

from conftest import TINY
from ptycho_lib.centroids import with_slow_modulus, with_slow_phase
from ptycho_lib.contract import canonicalise
from ptycho_lib.data import simulate_like
from ptycho_lib.geometry import scanned_region
from ptycho_lib.metrics import compare
from ptycho_lib.physics import scale_probe
from ptycho_lib.scan import scan_from
from ptycho_lib.simulate import simulate


def _scan(nphotons):
    """A 12 x 12 scan of a random object (the reconstruction's own forward model), its
    scaled probe and scanned region."""
    spec = dataclasses.replace(TINY, rows=12, cols=12, nphotons=nphotons)
    sim = simulate_like(scan_from(canonicalise(simulate(spec), "t.npz")), 5)
    return sim, scale_probe(sim.probe.astype(np.complex128), sim.nphotons), scanned_region(sim.x, sim.y)


def _phase_error(obj, truth, region):
    """rms phase difference over the region, its mean taken out."""
    d = obj[region] * np.conj(truth[region])
    return float(np.sqrt(np.mean(np.angle(d * np.conj(d.mean()) / abs(d.mean())) ** 2)))


@pytest.mark.parametrize("nphotons", [1e4, 1e6])
def test_a_slow_phase_error_is_taken_out_and_the_truth_left_as_it_is(nphotons):
    """The object with a wide phase bump (1.2 rad, 16 px; the probe's radius is 9 px)
    added: the centroids put at least 40 % of it back, amplitude untouched. The truth
    stays the truth, at low dose too (its centroids differ from the measured ones only
    by the noise)."""
    sim, probe, region = _scan(nphotons)
    h, w = sim.obj.shape
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (region[0].start + region[0].stop) / 2, (region[1].start + region[1].stop) / 2
    bump = 1.2 * np.exp(-((yy - cy) ** 2 + (xx - cx - 6) ** 2) / (2 * 16.0 ** 2))
    bumped = (sim.obj * np.exp(1j * bump)).astype(np.complex64)
    fixed = with_slow_phase(bumped, probe, sim.amplitude, sim.bad_pixels, sim.y, sim.x, 1.0)
    before, after = _phase_error(bumped, sim.obj, region), _phase_error(fixed, sim.obj, region)
    assert after < 0.6 * before, (before, after)  # measured 0.288 -> 0.132 (1e4), 0.138 (1e6)
    assert compare(fixed, sim.obj, region)["phase_ssim"] > compare(bumped, sim.obj, region)["phase_ssim"] + 0.2
    np.testing.assert_allclose(np.abs(fixed), np.abs(bumped), rtol=1e-5)
    truth = with_slow_phase(sim.obj.astype(np.complex64), probe, sim.amplitude, sim.bad_pixels, sim.y, sim.x, 1.0)
    assert compare(truth, sim.obj, region)["phase_ssim"] > 0.99
    assert _phase_error(truth, sim.obj, region) < 0.03


def test_patterns_left_out_do_not_inform_it():
    """With `patterns`, the other patterns' data are not read into the answer (the
    refinement judges the object made without its held-out patterns)."""
    sim, probe, region = _scan(1e6)
    start = (sim.obj * np.exp(1j * 0.002 * (np.arange(sim.obj.shape[1]) - 40.0) ** 2)).astype(np.complex64)
    used = np.arange(0, len(sim.x), 2)
    spoiled = sim.amplitude.copy()
    spoiled[1::2] = spoiled[1::2][:, ::-1]  # the left-out patterns turned upside down
    spoiled[1::2] *= 1.5  # and brighter (their totals)
    for correct in (with_slow_phase, with_slow_modulus):
        answers = [correct(start, probe, a, sim.bad_pixels, sim.y, sim.x, 1.0, used) for a in (sim.amplitude, spoiled)]
        np.testing.assert_array_equal(*answers)
        assert not np.array_equal(answers[0], correct(start, probe, spoiled, sim.bad_pixels, sim.y, sim.x, 1.0))


def _modulus_error(obj, truth, region):
    """rms of log(|obj| / |truth|) over the region, its mean taken out (a scale)."""
    d = np.log(np.abs(obj[region]) / np.abs(truth[region]))
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


@pytest.mark.parametrize("nphotons", [1e4, 1e6])
def test_a_slow_modulus_error_is_taken_out_and_the_truth_left_as_it_is(nphotons):
    """The object's modulus dipped by 30 % over 16 px: the patterns' totals put at least
    half of it back, the phase untouched; the truth stays the truth."""
    sim, probe, region = _scan(nphotons)
    h, w = sim.obj.shape
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (region[0].start + region[0].stop) / 2, (region[1].start + region[1].stop) / 2
    dip = 1 - 0.3 * np.exp(-((yy - cy - 4) ** 2 + (xx - cx) ** 2) / (2 * 16.0 ** 2))
    dipped = (sim.obj * dip).astype(np.complex64)
    fixed = with_slow_modulus(dipped, probe, sim.amplitude, sim.bad_pixels, sim.y, sim.x, 1.0)
    before, after = _modulus_error(dipped, sim.obj, region), _modulus_error(fixed, sim.obj, region)
    assert after < 0.5 * before, (before, after)
    np.testing.assert_allclose(np.angle(fixed), np.angle(dipped), atol=1e-5)
    truth = with_slow_modulus(sim.obj.astype(np.complex64), probe, sim.amplitude, sim.bad_pixels, sim.y, sim.x, 1.0)
    assert _modulus_error(truth, sim.obj, region) < 0.01


def test_the_slow_modulus_first_keeps_a_modulus_error_out_of_the_phase():
    """A modulus error with the phase right: the centroids alone read it as phase (a
    centroid weights the phase gradient, the probe's own included, by |P O|^2); with
    the slow modulus taken out first they add less than half that phase."""
    sim, probe, region = _scan(1e6)
    h, w = sim.obj.shape
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (region[0].start + region[0].stop) / 2, (region[1].start + region[1].stop) / 2
    dipped = (sim.obj * (1 - 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx - 4) ** 2) / (2 * 16.0 ** 2)))).astype(
        np.complex64)
    args = (probe, sim.amplitude, sim.bad_pixels, sim.y, sim.x, 1.0)
    alone = _phase_error(with_slow_phase(dipped, *args), sim.obj, region)
    first = _phase_error(with_slow_phase(with_slow_modulus(dipped, *args), *args), sim.obj, region)
    assert first < 0.5 * alone, (alone, first)
