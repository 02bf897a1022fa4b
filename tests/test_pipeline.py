"""End to end: Snakemake as a subprocess in a temporary copy of the repository."""

import json

import numpy as np
import pytest
import yaml

from conftest import TINY
from helpers import TINY_CONFIG, copy_repo, planned_jobs, snakemake
from ptycho_lib.io import read_npz, write_npz
from ptycho_lib.simulate import simulate

STAGE_OUTPUTS = [
    "results/validated/{d}.json", "results/canonical/{d}.npz", "results/train/{d}/last.ckpt",
    "results/train/{d}/metrics.csv", "results/models/{d}/wts.h5.zip", "results/recon/{d}.npz",
    "results/recon/{d}.png",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = copy_repo(tmp_path_factory.mktemp("repo"))
    write_npz(work / "resources/tiny.npz", simulate(TINY))
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    return work


def test_fresh_clone_plans_exactly_the_six_stages_for_fly001(workdir):
    proc = snakemake(workdir, "-n", "results/recon/fly001.png")
    assert planned_jobs(proc.stdout + proc.stderr) == {
        "validate": 1, "transpose": 1, "train": 1, "export": 1, "recon": 1, "render": 1}


def test_any_scan_by_name_runs_every_stage_then_nothing(workdir):
    snakemake(workdir, "results/recon/tiny.png", "--cores", "2", "--configfile", "tiny.yaml")
    for pattern in STAGE_OUTPUTS:
        assert (workdir / pattern.format(d="tiny")).stat().st_size > 0, pattern
    for log in ("validate", "transpose", "train", "export", "recon", "render/recon"):
        assert (workdir / f"logs/{log}/tiny.log").exists(), log
    for rule in ("train", "recon"):
        assert (workdir / f"logs/timings/{rule}/tiny.tsv").exists(), rule

    assert (workdir / "results/recon/tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rec = read_npz(workdir / "results/recon/tiny.npz")
    truth = read_npz(workdir / "resources/tiny.npz")["objectGuess"]
    assert rec["object"].shape == truth.shape and rec["object"].dtype == np.complex64
    lit = rec["weight"] > 0.1 * rec["weight"].max()
    assert lit.mean() > 0.3 and np.all(np.isfinite(rec["object"][lit]))
    metrics = (workdir / "results/train/tiny/metrics.csv").read_text().splitlines()
    assert "train_loss" in metrics[0] and "val_loss" in metrics[0] and len(metrics) >= 3

    again = snakemake(workdir, "-n", "results/recon/tiny.png", "--configfile", "tiny.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_bad_raw_file_stops_the_pipeline_with_its_message(workdir):
    raw = dict(simulate(TINY))
    raw["xcoords"] = raw["xcoords"][:-2]
    np.savez(workdir / "resources/broken.npz", **raw)
    proc = snakemake(workdir, "results/recon/broken.png", "--cores", "1", "--configfile", "tiny.yaml", check=False)
    assert proc.returncode != 0
    assert not (workdir / "results/validated/broken.json").exists()
    log = (workdir / "logs/validate/broken.log").read_text().strip().splitlines()
    assert log == ["error: resources/broken.npz: xcoords has 34 entries but ycoords has 36"]


def test_methods_are_scored_side_by_side_against_the_reference(workdir):
    """One target builds baseline and refinement beside the network, scores all three
    against objectGuess and draws their FRC curves with the table."""
    snakemake(workdir, "results/metrics/tiny.json", "--cores", "2", "--configfile", "tiny.yaml")
    table = json.loads((workdir / "results/metrics/tiny.json").read_text())
    assert set(table) == {"recon", "baseline", "refined"}
    for row in table.values():
        assert set(row) >= {"amplitude_ssim", "phase_ssim", "amplitude_psnr", "phase_psnr",
                            "frc_resolution_cycles_per_pixel", "nll_per_photon", "stage_wall_s"}
        assert row["stage_wall_s"] > 0
    # 40 ePIE passes on a well-sampled, high-dose scan recover the phase; two epochs of
    # training do not, and refining their result recovers it too
    assert table["baseline"]["phase_ssim"] > 0.6
    assert table["refined"]["phase_ssim"] > table["recon"]["phase_ssim"]
    # with no reference needed, the patterns rank the methods the same way
    assert table["baseline"]["nll_per_photon"] < table["recon"]["nll_per_photon"]
    assert table["refined"]["nll_per_photon"] < table["recon"]["nll_per_photon"]
    assert 0 < table["refined"]["heldout_nll_per_photon"] and "heldout_nll_per_photon" not in table["baseline"]
    per_stage = json.loads((workdir / "results/metrics/baseline/tiny.json").read_text())
    assert per_stage["phase_ssim"] == table["baseline"]["phase_ssim"] and len(per_stage["frc"]["frc"]) > 5
    assert (workdir / "results/metrics/tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
