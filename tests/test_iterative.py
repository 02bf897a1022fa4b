"""The iterative solver on a small simulated scan."""

import dataclasses

import numpy as np
import pytest

from conftest import TINY
from ptycho_lib.contract import canonicalise
from ptycho_lib.data import simulate_like
from ptycho_lib.geometry import scanned_region
from ptycho_lib.config import SolverConfig
from ptycho_lib.iterative import Solver, refine, spread_subset
from ptycho_lib.metrics import compare
from ptycho_lib.physics import scale_probe
from ptycho_lib.scan import scan_from
from ptycho_lib.simulate import ScanSpec, simulate


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


def test_a_simulated_random_object_scan_fits_the_forward_model_the_solver_inverts(scan):
    """simulate_like: the measured scan's probe, geometry and dose, another object. ePIE
    recovers that object from its patterns, so patterns and positions agree."""
    measured = scan_from(scan)
    sim = simulate_like(measured, seed=3)
    assert sim.amplitude.shape == measured.amplitude.shape and np.array_equal(sim.probe, measured.probe)
    assert np.allclose(sim.x - sim.x[0], measured.x - measured.x[0]) and np.allclose(sim.y - sim.y[0], measured.y - measured.y[0])
    # the object transmits 70-100 % of the intensity: counts on the measured scan's scale
    ratio = float(np.mean(np.sum(sim.amplitude.astype(np.float64) ** 2, axis=(1, 2)))) / measured.nphotons
    assert 0.6 < ratio < 1.0, ratio
    probe = scale_probe(sim.probe.astype(np.complex128), sim.nphotons)
    obj = Solver(sim.amplitude, probe, sim.y, sim.x, np.ones(sim.obj.shape), SolverConfig(iterations=40, batch_size=8)).run()
    score = compare(obj, sim.obj, scanned_region(sim.x, sim.y))
    assert score["phase_ssim"] > 0.6, score
    # noiseless patterns are the solver's own model of the true object, to float precision
    exact = simulate_like(measured, seed=3, noise=False)
    at_truth = Solver(exact.amplitude, probe, exact.y, exact.x, exact.obj, SolverConfig(iterations=1, batch_size=8))
    assert at_truth.step(False) < 1e-4
    again, other = simulate_like(measured, seed=3), simulate_like(measured, seed=4)
    assert np.array_equal(again.amplitude, sim.amplitude) and not np.allclose(other.obj, sim.obj)


def _blurred(obj, sigma):
    fy, fx = np.fft.fftfreq(obj.shape[0])[:, None], np.fft.fftfreq(obj.shape[1])[None, :]
    return np.fft.ifft2(np.fft.fft2(obj) * np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2)))


@pytest.fixture(scope="module")
def exact(scan):
    """A scan made with the solver's own forward model (Poisson noise), its object known."""
    sim = simulate_like(scan_from(scan), seed=5)
    return sim, scale_probe(sim.probe.astype(np.complex128), sim.nphotons)


def test_held_out_nll_ranks_the_true_object_first(exact):
    """No reference needed: patterns are predicted best by the true object, worse by a
    blurred one, worst by a flat one."""
    sim, probe = exact

    def nll(obj):
        return Solver(sim.amplitude[:1], probe, sim.y[:1], sim.x[:1], obj, SolverConfig()).nll(
            sim.amplitude, sim.y, sim.x)

    truth, blurred, flat = nll(sim.obj), nll(_blurred(sim.obj, 1.5)), nll(np.ones(sim.obj.shape))
    assert truth < blurred < flat, (truth, blurred, flat)


def test_the_refinement_follows_the_held_out_patterns(exact):
    """From a flat start the held-out NLL falls check after check: refine to the end. From
    the true object only noise is left to fit, which the held-out patterns do not share:
    keep the start as it is, and stop looking after `holdout_patience` checks."""
    sim, probe = exact
    cfg = SolverConfig(batch_size=8, holdout_every=4, holdout_patience=2, pulls=(1.0,))
    solver, curve = refine(sim.amplitude, probe, sim.y, sim.x, np.ones(sim.obj.shape), cfg, 20)
    assert solver.passes == 21 and list(curve[:, 0]) == [0, 4, 8, 12, 16, 20]
    assert list(curve[1:, 1]) == [1.0, 0, 0, 0, 0]  # the pull, then plain passes
    assert np.all(np.diff(curve[:, 2]) < 0), curve
    solver, curve = refine(sim.amplitude, probe, sim.y, sim.x, sim.obj, cfg, 20)
    assert solver.passes == 0 and list(curve[:, 0]) == [0, 4, 8], curve
    assert np.array_equal(solver.obj.numpy(), sim.obj.astype(np.complex64))
    # the patterns held out are spread over the whole scan
    held = spread_subset(len(sim.x), cfg.holdout_fraction)
    assert len(held) == round(0.1 * len(sim.x)) and np.ptp(sim.y[held]) > 0.8 * np.ptp(sim.y)


def test_the_refinement_runs_its_own_momentum_and_batches_not_the_baselines(exact):
    """solver.refine_momentum and refine_batch_size drive the refinement's passes;
    solver.momentum and batch_size (the baseline's) do not touch them."""
    sim, probe = exact
    start = _blurred(sim.obj, 2.0).astype(np.complex64)

    def refined(**settings):
        solver, _ = refine(sim.amplitude, probe, sim.y, sim.x, start, SolverConfig(**settings), 12)
        assert solver.passes > 0
        return solver.obj.numpy()

    own = dict(refine_momentum=0.5, refine_batch_size=8)
    carried = refined(**own)
    assert np.abs(refined(**{**own, "refine_momentum": 0.0}) - carried).max() > 1e-3
    assert np.abs(refined(**{**own, "refine_batch_size": 32}) - carried).max() > 1e-3
    np.testing.assert_array_equal(refined(**own, momentum=0.9, batch_size=32), carried)


@pytest.mark.parametrize("nphotons", [3e2, 1e6])
def test_the_data_driven_refinement_lands_near_the_best_choice_in_hindsight(nphotons):
    """A start with the truth's fine detail lost and a slowly varying phase error added
    (as a network's might be), refined at a low and a high dose. The pull and the passes
    are chosen from the patterns alone (refine never sees the object); scored against the
    truth afterwards, the choice is within 0.01 phase SSIM of the best state on its path.
    At low dose that is near the start, at high dose far along."""
    sim = simulate_like(scan_from(canonicalise(simulate(dataclasses.replace(TINY, nphotons=nphotons)), "t.npz")), 2)
    probe = scale_probe(sim.probe.astype(np.complex128), sim.nphotons)
    yy, xx = np.mgrid[:sim.obj.shape[0], :sim.obj.shape[1]] / sim.obj.shape[0]
    start = (_blurred(sim.obj, 2.0) * np.exp(0.6j * np.sin(2 * np.pi * yy) * np.cos(np.pi * xx))).astype(np.complex64)
    region = scanned_region(sim.x, sim.y)
    path = []
    truth, sim.obj = sim.obj, None  # nothing below the refinement can see it
    solver, curve = refine(sim.amplitude, probe, sim.y, sim.x, start, SolverConfig(batch_size=8), 30,
                           on_check=lambda s: path.append(compare(s.obj.numpy(), truth, region)["phase_ssim"]))
    chosen = compare(solver.obj.numpy(), truth, region)["phase_ssim"]
    assert chosen >= max(path) - 0.01, (chosen, path, curve)
    assert max(path) > min(path) + 0.05, path  # the choice mattered: the path has better and worse states
    assert (solver.passes <= 4) if nphotons < 1e4 else (solver.passes >= 20), curve


def _probe_error(probe, truth):
    """Relative distance after the best complex scale (the object can absorb the rest)."""
    c = np.vdot(probe, truth) / np.vdot(probe, probe)
    return float(np.linalg.norm(c * probe - truth) / np.linalg.norm(truth))


@pytest.mark.parametrize("blur", [1.5, 2.5])
def test_probe_refinement_recovers_a_blurred_probe(exact, blur):
    """Given a blurred probe (an approximate one, as a beamline often has), the solver
    with probe refinement moves it toward the true probe and recovers the object as
    with the true probe; without refinement the object is lost. At 2.5 px (probe error
    0.77) this holds only when the probe is refined from the first pass: delayed by five
    passes, the flat start had absorbed the probe's error and both were lost."""
    sim, probe = exact
    fy, fx = np.fft.fftfreq(probe.shape[0])[:, None], np.fft.fftfreq(probe.shape[1])[None, :]
    guess = scale_probe(np.fft.ifft2(np.fft.fft2(probe) * np.exp(-2 * (np.pi * blur) ** 2 * (fy**2 + fx**2))),
                        sim.nphotons)
    region = scanned_region(sim.x, sim.y)

    def solve(p, refine_probe):
        s = Solver(sim.amplitude, p, sim.y, sim.x, np.ones(sim.obj.shape),
                   SolverConfig(iterations=60, batch_size=8, probe_refinement=refine_probe))
        return compare(s.run(), sim.obj, region)["phase_ssim"], s.probe.numpy()

    known, _ = solve(probe, False)
    fixed, _ = solve(guess, False)
    refined, found = solve(guess, True)
    assert _probe_error(found, probe) < 0.25 * _probe_error(guess, probe), (_probe_error(found, probe),
                                                                           _probe_error(guess, probe))
    assert refined > known - 0.02 and fixed < known - 0.2, (known, fixed, refined)


def test_momentum_speeds_up_the_large_scale_phase_and_keeps_the_converged_object():
    """On a fixture-like high-dose scan (64 px patterns, 8 px steps, phase disks of
    tens of pixels) plain passes need tens of passes for the large-scale phase;
    momentum on the smoothed change gets there sooner and ends no worse (fine
    detail, amplitude included)."""
    scan = scan_from(canonicalise(simulate(ScanSpec(rows=12, cols=12, nphotons=1e7)), "hi.npz"))
    probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
    region = scanned_region(scan.x, scan.y)
    scores = {}
    for momentum in (0.0, 0.9):
        solver = Solver(scan.amplitude, probe, scan.y, scan.x, np.ones(scan.obj.shape),
                        SolverConfig(momentum=momentum))
        scores[momentum] = [compare(solver.run(k), scan.obj, region) for k in (10, 70)]
    early, late = zip(*scores.values())
    assert early[1]["phase_ssim"] > early[0]["phase_ssim"] + 0.03, early
    assert late[1]["phase_ssim"] > late[0]["phase_ssim"] - 0.005, late
    assert late[1]["amplitude_ssim"] > late[0]["amplitude_ssim"] - 0.01, late


def test_the_poisson_engine_recovers_more_of_a_low_dose_scan():
    """At 1e3 photons per pattern most pixels hold 0 or 1 photon: imposing the measured
    modulus (ePIE) fits that noise, while LSQ-ML's Poisson-likelihood step with its
    least-squares step lengths keeps closer to the object. At high dose both get it."""
    scores = {}
    for nphotons in (1e3, 1e6):
        scan = scan_from(canonicalise(simulate(dataclasses.replace(TINY, rows=10, cols=10, nphotons=nphotons)),
                                      "dose.npz"))
        probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
        region = scanned_region(scan.x, scan.y)
        for engine in ("epie", "lsqml"):
            solver = Solver(scan.amplitude, probe, scan.y, scan.x, np.ones(scan.obj.shape),
                            SolverConfig(engine=engine))
            scores[nphotons, engine] = compare(solver.run(40), scan.obj, region)["phase_ssim"]
    assert scores[1e3, "lsqml"] > scores[1e3, "epie"] + 0.05, scores  # measured 0.69 against 0.60
    assert min(scores[1e6, "epie"], scores[1e6, "lsqml"]) > 0.9, scores


def _low_passed(values, sigma):
    return _blurred(values, sigma).real


def _without_slow_phase(step, nphotons):
    """A 10 x 10 scan of a random object, its scaled probe and scanned region, and the
    object with its slow phase (low-passed over 8 px) taken out."""
    spec = dataclasses.replace(TINY, rows=10, cols=10, step=step, nphotons=nphotons)
    sim = simulate_like(scan_from(canonicalise(simulate(spec), "t.npz")), 5)
    probe = scale_probe(sim.probe.astype(np.complex128), sim.nphotons)
    region = scanned_region(sim.x, sim.y)
    flattened = (sim.obj * np.exp(-1j * _low_passed(np.angle(sim.obj), 8.0))).astype(np.complex64)
    return sim, probe, region, flattened


def test_the_large_scale_fit_restores_the_slow_phase_a_start_lacks():
    """A start with the object's fine detail but none of its slow phase (what the
    network's patches give at low overlap), at a dose where more passes only fit noise:
    the refinement keeps the start, and the large-scale fit, judged by held-out patterns
    the start was made without, puts the slow phase back; without the fit it stays
    lost. The truth as start stays as it is."""
    sim, probe, region, flattened = _without_slow_phase(step=6.0, nphotons=3e3)

    def refined(start, scale):
        cfg = SolverConfig(refine_smooth_scale=scale, batch_size=8, refine_batch_size=8)
        solver, _ = refine(sim.amplitude, probe, sim.y, sim.x, start, cfg, 20, fair_start=start)
        assert solver.passes == 0  # the start's fine detail is the truth's: passes only fit noise
        return compare(solver.obj.numpy(), sim.obj, region), solver.smooth_curve

    start = compare(flattened, sim.obj, region)
    without, _ = refined(flattened, 0.0)
    fitted, curve = refined(flattened, 3.0)
    assert without == start
    assert fitted["phase_ssim"] > start["phase_ssim"] + 0.2, (start, fitted)
    assert fitted["amplitude_ssim"] > start["amplitude_ssim"] - 0.01, (start, fitted)  # a phase factor only
    assert min(nll for _, nll in curve) < curve[0][1]  # held-out patterns judged it, and it predicts them better
    kept, _ = refined(sim.obj.astype(np.complex64), 3.0)
    assert kept["phase_ssim"] > 0.99 and kept["amplitude_ssim"] > 0.99, kept


@pytest.mark.parametrize("step, pulls, probe_refinement, gain", [(6.0, (16.0,), False, 0.1), (9.0, (), True, 0.05)],
                         ids=["held by a pull", "plain passes, probe refined"])
def test_a_state_the_passes_chose_gets_its_slow_phase_from_the_large_scale_fit(step, pulls, probe_refinement, gain):
    """At high dose the passes run from a start without the slow phase. A strong pull
    toward the start holds the chosen state near it; with the probe refined beside the
    object (an approximate probe), plain passes leave part of the slow phase in the
    probe. Either way the large-scale fit, run from the chosen state (made without the
    held-out patterns), frees the slow phase."""
    sim, probe, region, flattened = _without_slow_phase(step=step, nphotons=1e6)

    def refined(scale):
        cfg = SolverConfig(refine_smooth_scale=scale, pulls=pulls, probe_refinement=probe_refinement, batch_size=8,
                           refine_batch_size=8)
        solver, curve = refine(sim.amplitude, probe, sim.y, sim.x, flattened, cfg, 3)
        assert curve[-1][2] < curve[0][2] and curve[-1][:2].tolist() == [3, (*pulls, 0.0)[0]]  # the passes won
        return compare(solver.obj.numpy(), sim.obj, region), solver.smooth_curve

    held, _ = refined(0.0)
    freed, curve = refined(3.0)
    assert freed["phase_ssim"] > held["phase_ssim"] + gain, (held, freed)
    assert freed["amplitude_ssim"] > held["amplitude_ssim"] - 0.01, (held, freed)
    assert min(nll for _, nll in curve) < curve[0][1]


def test_the_held_out_patterns_choose_how_far_to_blur_a_noisy_result():
    """At low dose a start whose fine detail is noise is blurred as far as the held-out
    patterns ask, which brings it closer to the truth; at high dose the truth itself is
    left sharp."""
    def refined(nphotons, start_of, scales):
        sim, probe, region, _ = _without_slow_phase(step=6.0, nphotons=nphotons)
        start = start_of(sim.obj).astype(np.complex64)
        cfg = SolverConfig(refine_resolution_scales=scales, refine_smooth_scale=0.0, batch_size=8,
                           refine_batch_size=8)
        solver, _ = refine(sim.amplitude, probe, sim.y, sim.x, start, cfg, 6, fair_start=start)
        return compare(solver.obj.numpy(), sim.obj, region), solver.resolution_curve

    def noisy(obj):
        rng = np.random.default_rng(0)
        return obj + 0.3 * (rng.standard_normal(obj.shape) + 1j * rng.standard_normal(obj.shape))

    sharp, _ = refined(1e3, noisy, (0.0,))
    blurred, curve = refined(1e3, noisy, SolverConfig.refine_resolution_scales)
    chosen = min(curve, key=lambda c: c[1])[0]
    assert chosen > 0 and blurred["phase_ssim"] > sharp["phase_ssim"] + 0.05, (sharp, blurred, curve)
    assert blurred["amplitude_ssim"] > sharp["amplitude_ssim"] + 0.05, (sharp, blurred, curve)
    kept, curve = refined(1e6, lambda obj: obj, SolverConfig.refine_resolution_scales)
    assert min(curve, key=lambda c: c[1])[0] == 0 and kept["phase_ssim"] > 0.99, (kept, curve)
