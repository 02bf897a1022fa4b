"""A scan whose file holds only an approximate probe (`refine_probe`): the baseline
refines the probe, and the network, its reconstruction and the refinement run on the
canonical scan carrying that probe (results/probed/NAME.npz)."""

import numpy as np
import pytest

from conftest import TINY
from helpers import copy_repo, snakemake
from ptycho_lib.contract import canonicalise
from ptycho_lib.io import read_npz, write_npz
from ptycho_lib.reconstruction import Reconstruction
from ptycho_lib.simulate import simulate
from scripts import probed


@pytest.fixture
def canonical(tmp_path, tiny_raw):
    path = tmp_path / "scan.npz"
    write_npz(path, canonicalise(tiny_raw, "tiny.npz"), stored=("diffraction",))
    return path


def _solved(path, scan, probe):
    shape = (80, 80)
    extra = {} if probe is None else {"probe": probe}
    Reconstruction(np.ones(shape, np.complex64), np.ones(shape, np.float32), scan["xcoords"] + 8,
                   scan["ycoords"] + 8, np.array([8.0, 8.0]), {}, {}, extra).save(path)
    return path


def test_the_probed_scan_carries_the_solvers_probe_and_nothing_else_changes(canonical, tmp_path):
    scan = read_npz(canonical)
    refined = (np.roll(scan["probeGuess"], 1, axis=0) * 7.0).astype(np.complex64)
    out = tmp_path / "probed.npz"
    probed.main([str(canonical), str(_solved(tmp_path / "solved.npz", scan, refined)), str(out)])
    got = read_npz(out)
    # the refined probe's shape, on the file probe's energy (the photon scale is nphotons')
    np.testing.assert_allclose(got["probeGuess"], refined / 7.0 * np.linalg.norm(scan["probeGuess"])
                               / np.linalg.norm(refined / 7.0), rtol=1e-5, atol=1e-6)
    for key in ("diffraction", "xcoords", "ycoords", "nphotons", "objectGuess"):
        np.testing.assert_array_equal(got[key], scan[key])
    assert "probe replaced" in str(got["conversions"])


def test_a_solver_run_without_a_refined_probe_is_refused(canonical, tmp_path, capsys):
    from ptycho_lib.cli import run

    out = tmp_path / "probed.npz"
    with pytest.raises(SystemExit):
        run(probed.main, [str(canonical), str(_solved(tmp_path / "plain.npz", read_npz(canonical), None)), str(out)])
    assert "holds no refined probe: run the solver with --probe-refinement" in capsys.readouterr().err
    assert not out.exists()


def test_every_stage_after_the_baseline_reads_the_probed_scan(tmp_path):
    work = copy_repo(tmp_path)
    write_npz(work / "resources/tiny.npz", simulate(TINY))
    out = snakemake(work, "-n", "-p", "results/metrics/tiny.json", "results/probe/tiny.png", "results/recon/tiny.h5",
                    "--config", "datasets={tiny: {refine_probe: true}}").stdout
    commands = [line for line in out.splitlines() if "python -m scripts." in line]

    def command(script):
        return next(line for line in commands if f"python -m scripts.{script}" in line)
    assert "--test-data results/canonical/tiny.npz" in command("solve baseline")
    for solve in ("solve baseline", "solve refined"):  # the probe is refined further in both
        assert command(solve).split("--no-probe-refinement")[-1].count("--probe-refinement") == 1, solve
    assert "results/canonical/tiny.npz results/baseline/tiny.npz results/probed/tiny.npz" in command("probed")
    for script in ("train", "infer", "solve refined", "render --probe", "product", "evaluate results/refined"):
        assert "results/probed/tiny.npz" in command(script), script
