"""Bad detector pixels: a block of hot pixels ruins a reconstruction unless it is marked
in `bad_pixels`; marked, it is left out of the network's loss, the solver's updates and
the data-fit figure, and the scan reconstructs as well as the same scan measured clean."""

import numpy as np
import pytest
import torch

from ptycho_lib.config import DataConfig, ExecConfig, InferConfig, ModelConfig, SolverConfig, TrainConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.geometry import canvas_geometry, scanned_region
from ptycho_lib.iterative import Solver, pattern_nll
from ptycho_lib.metrics import compare
from ptycho_lib.model import PtychoNet
from ptycho_lib.physics import poisson_nll, scale_probe
from ptycho_lib.reconstruct import reconstruct
from ptycho_lib.scan import scan_from
from ptycho_lib.simulate import ScanSpec, simulate
from ptycho_lib.training import train

SPEC = ScanSpec(n=32, rows=12, cols=12, step=4.0, nphotons=1e6, seed=3, object_seed=5)
BLOCK = (slice(20, 24), slice(9, 13))  # 4 x 4 detector pixels off the centre, 3 % of the light
HOT_COUNTS = 3000  # added to every pattern there: a few times the brightest measured pixel


@pytest.fixture(scope="module")
def raws() -> dict[str, dict]:
    """The scan as measured clean, with the hot block, and with the block marked bad."""
    clean = simulate(SPEC)
    hot = dict(clean, diff3d=(clean["diff3d"].astype(np.int64) + _block(HOT_COUNTS)).astype(np.uint16))
    bad = np.zeros((SPEC.n, SPEC.n), bool)
    bad[BLOCK] = True
    return {"clean": clean, "hot": hot, "marked": dict(hot, bad_pixels=bad)}


def _block(value) -> np.ndarray:
    out = np.zeros((SPEC.n, SPEC.n, 1), np.int64)
    out[BLOCK] = value
    return out


@pytest.fixture(scope="module")
def scans(raws):
    return {k: scan_from(canonicalise(raw, f"{k}.npz")) for k, raw in raws.items()}


def score(obj, scan) -> dict:
    s = compare(obj, scan.obj, scanned_region(scan.x, scan.y))
    return {"amplitude": s["amplitude_ssim"], "phase": s["phase_ssim"]}


def assert_as_good_as_clean_and_hot_is_bad(scores):
    for part in ("amplitude", "phase"):
        assert scores["marked"][part] >= scores["clean"][part] - 0.02, scores
        assert scores["hot"][part] <= scores["clean"][part] - 0.1, scores


def test_the_marked_scan_keeps_the_photon_scale_and_what_the_block_held_is_gone(scans, raws):
    marked, clean = scans["marked"], scans["clean"]
    assert marked.bad_pixels.sum() == 16 and np.all(marked.amplitude[:, BLOCK[0], BLOCK[1]] == 0)
    # the photons per pattern include the light that fell on the block (without it: 3 % short)
    assert marked.nphotons == pytest.approx(clean.nphotons, rel=3e-3)
    assert scans["hot"].nphotons > clean.nphotons + 0.9 * 16 * HOT_COUNTS
    # the hot values themselves leave no trace: the clean scan with the block marked is the same file
    same = scan_from(canonicalise(dict(raws["clean"], bad_pixels=raws["marked"]["bad_pixels"]), "c.npz"))
    np.testing.assert_array_equal(same.amplitude, marked.amplitude)
    assert same.nphotons == marked.nphotons


def test_unmeasured_pixels_add_nothing_to_the_loss_nor_its_gradient():
    lam = (torch.rand(3, 8, 8, dtype=torch.float64) * 50 + 1).requires_grad_()
    counts = torch.poisson(lam.detach())
    marked = counts.clone()
    marked[:, 2:4, 5] = -1  # unmeasured
    exact = counts.clone()
    exact[:, 2:4, 5] = lam.detach()[:, 2:4, 5]  # where the model is exactly right a pixel adds nothing
    loss = poisson_nll(lam, marked, 1.0)
    torch.testing.assert_close(loss, poisson_nll(lam, exact, 1.0))
    loss.sum().backward()
    assert torch.all(lam.grad[:, 2:4, 5] == 0) and torch.all(lam.grad[:, 4:, :] != 0)


def test_the_solver_leaves_the_block_out(scans):
    scores = {}
    for name, scan in scans.items():
        shape, (oy, ox) = canvas_geometry(scan.x, scan.y, scan.n, scan.obj.shape)
        probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
        solver = Solver(scan.measured, probe, scan.y + oy, scan.x + ox, np.ones(shape),
                        SolverConfig(iterations=60, batch_size=8))
        scores[name] = score(solver.run(), scan)
    assert_as_good_as_clean_and_hot_is_bad(scores)


def test_the_data_fit_figure_leaves_the_block_out(scans):
    def nll(scan):
        shape, (oy, ox) = canvas_geometry(scan.x, scan.y, scan.n, scan.obj.shape)
        probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
        return pattern_nll(scan.obj, probe, scan.measured, scan.y + oy, scan.x + ox)

    # under the true object the marked scan fits as the clean one does; the hot block does not fit
    assert nll(scans["marked"]) == pytest.approx(nll(scans["clean"]), rel=0.05)
    assert nll(scans["hot"]) > 5 * nll(scans["clean"])


def test_the_network_trained_and_run_on_the_marked_scan_is_as_good_as_on_the_clean_one(scans, tmp_path):
    def trained(name: str, seed: int) -> dict:
        scan = scans[name]
        # one thread: beside the other test worker (pyproject's addopts run two), two threads
        # spinning at their barriers stall the other's (CI, three trainings: 491 s with two, 141 s with one)
        ckpt = train(scan, None, tmp_path / f"{name}{seed}", DataConfig(), ModelConfig(width=16),
                     TrainConfig(max_epochs=60, batch_size=8, logger="none", seed=seed),
                     ExecConfig(threads=1, quiet=True))
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        net = PtychoNet(SPEC.n, 16)
        net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        rec = reconstruct(net.eval(), scan, InferConfig())
        return score(rec.in_frame(scan.obj.shape), scan)

    # on this small scan one training's SSIM moves by up to 0.1 with the seed, and now and
    # then one of either scan's trainings falls behind (docs/benchmarks.md): the typical
    # training is the median of three. The hot block's harm is larger (one training)
    scores = {}
    for name in ("clean", "marked"):
        runs = [trained(name, seed) for seed in (0, 1, 2)]
        scores[name] = {part: float(np.median([r[part] for r in runs])) for part in ("amplitude", "phase")}
    scores["hot"] = trained("hot", 0)
    assert_as_good_as_clean_and_hot_is_bad(scores)
