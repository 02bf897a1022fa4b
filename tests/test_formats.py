"""Bring your own data: CXI files and ptychodus folders made here with h5py from the
simulator's known truth, read back into the data contract (positions, patterns, probe,
geometry), refused with one line when broken, and the ptychodus product written out."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from beamline_files import (DISTANCE, ENERGY_EV, HOT, PAD, PIXEL, detector_pixel, padded_counts, write_cxi,
                            write_ptychodus)
from conftest import REPO
from ptycho_lib.config import DatasetConfig
from ptycho_lib.formats import MARGIN, read_cxi, read_ptychodus, write_product
from ptycho_lib.reconstruction import Reconstruction
from ptycho_lib.simulate import ScanSpec, simulate

def check_round_trip(out, raw):
    counts = np.moveaxis(raw["diff3d"], -1, 0).astype(np.float64)
    n = counts.shape[-1]
    assert np.abs(out["xcoords"] - raw["xcoords"]).max() < 0.01
    assert np.abs(out["ycoords"] - raw["ycoords"]).max() < 0.01
    assert out["xcoords"].min() == pytest.approx(n / 2 + MARGIN)
    expected = np.sqrt(counts)
    bad = np.zeros((n, n), bool)
    for r, c in HOT:  # bad pixels inside the crop are zeroed and marked
        if PAD[0] <= r < PAD[0] + n and PAD[1] <= c < PAD[1] + n:
            expected[:, r - PAD[0], c - PAD[1]] = 0
            bad[r - PAD[0], c - PAD[1]] = True
    np.testing.assert_array_equal(out["bad_pixels"], bad)
    assert out["diffraction"].shape == expected.shape and out["diffraction"].dtype == np.float32
    np.testing.assert_allclose(out["diffraction"], expected, rtol=1e-6)
    np.testing.assert_allclose(out["probeGuess"], raw["probeGuess"], rtol=1e-5)
    np.testing.assert_allclose(out["pixel_size_m"], [PIXEL, PIXEL], rtol=1e-9)
    np.testing.assert_allclose(out["detector_pixel_size_m"], [detector_pixel(n)] * 2, rtol=1e-9)
    assert out["wavelength_m"] == pytest.approx(1.5498e-10, rel=1e-4)  # 8 keV
    # the photons per pattern count the light that fell on the bad pixels too
    true, seen = np.mean(np.sum(counts, axis=(1, 2))), np.mean(np.sum(expected**2, axis=(1, 2)))
    assert abs(out["nphotons"] - true) < 0.2 * abs(seen - true)


def test_cxi_round_trip_recovers_the_simulated_scan(tmp_path, tiny_raw):
    path = write_cxi(tmp_path / "scan.cxi", tiny_raw, flip_x=True)
    check_round_trip(read_cxi(path, DatasetConfig(flip_x=True)), tiny_raw)
    # the sign convention matters and is not guessed: without the flip, x runs backwards
    wrong = read_cxi(path)
    assert np.corrcoef(wrong["xcoords"], tiny_raw["xcoords"])[0, 1] < -0.99


def test_compressed_detector_frames_read_like_plain_ones(tmp_path, tiny_raw):
    """Frames compressed as Eiger writers do (Bitshuffle + LZ4, an HDF5 filter plugin)."""
    import hdf5plugin

    plain = write_cxi(tmp_path / "plain.cxi", tiny_raw)
    packed = write_cxi(tmp_path / "packed.cxi", tiny_raw)
    with h5py.File(packed, "a") as f:
        frames = f["entry_1/data_1/data"][()]
        del f["entry_1/data_1/data"]
        f.create_dataset("entry_1/data_1/data", data=frames, chunks=(1, *frames.shape[1:]),
                         **hdf5plugin.Bitshuffle(cname="lz4"))
        assert str(hdf5plugin.BSHUF_ID) in f["entry_1/data_1/data"]._filters  # a plugin filter, not gzip
    # read by the real program, in a process that imports nothing but the pipeline
    assert convert(packed, tmp_path / "packed.npz", "--flip-x").returncode == 0
    with np.load(tmp_path / "packed.npz") as b:
        np.testing.assert_array_equal(read_cxi(plain, DatasetConfig(flip_x=True))["diffraction"], b["diffraction"])


def test_cxi_fallback_paths_and_transposed_positions(tmp_path, tiny_raw):
    x = tiny_raw["xcoords"] * PIXEL
    y = tiny_raw["ycoords"] * PIXEL
    det, _ = padded_counts(tiny_raw)
    path = write_cxi(tmp_path / "scan.cxi", tiny_raw, **{
        "entry_1/data_1/data": None,  # a raster scan's (rows, columns, H, W) stack
        "entry_1/instrument_1/detector_1/data": det.reshape(6, 6, *det.shape[1:]),
        "entry_1/data_1/translation": None,
        "entry_1/sample_1/geometry_1/translation": np.stack([y, x, 0 * x], 1),  # x and y swapped
        "entry_1/instrument_1/source_1/illumination": None,
        "entry_1/instrument_1/source_1/probe": tiny_raw["probeGuess"]})
    check_round_trip(read_cxi(path, DatasetConfig(transpose_positions=True)), tiny_raw)


def test_ptychodus_round_trip_recovers_the_simulated_scan(tmp_path, tiny_raw):
    folder = write_ptychodus(tmp_path / "scan", tiny_raw)
    check_round_trip(read_ptychodus(folder / "diffraction.h5", folder / "product-in.h5"), tiny_raw)


def test_geometry_goes_through_the_contract_and_is_checked(tmp_path, tiny_raw):
    from ptycho_lib.contract import canonicalise
    from ptycho_lib.io import InputError

    raw = read_cxi(write_cxi(tmp_path / "scan.cxi", tiny_raw), DatasetConfig(flip_x=True))
    canonical = canonicalise(raw, "scan.npz", measurement="amplitude")
    for key in ("wavelength_m", "distance_m", "detector_pixel_size_m", "pixel_size_m", "origin_m"):
        np.testing.assert_array_equal(canonical[key], raw[key])
    assert canonical["nphotons"] == raw["nphotons"]  # the reader's measured counts, not a guess
    with pytest.raises(InputError, match="'pixel_size_m' must be positive"):
        canonicalise({**raw, "pixel_size_m": np.array([0.0, 1e-8])}, "scan.npz")
    with pytest.raises(InputError, match="'wavelength_m' must be finite real numbers of shape"):
        canonicalise({**raw, "wavelength_m": np.array([1e-10, 1e-10])}, "scan.npz")


def test_product_file_layout_and_bytes(tmp_path, tiny_raw):
    """What ptychodus's HDF5 product reader needs, in its units, reproducibly."""
    obj = tiny_raw["objectGuess"].astype(np.complex64)
    geometry = {"pixel_size_m": np.array([PIXEL, 2 * PIXEL]), "origin_m": np.array([1e-6, 2e-6]),
                "wavelength_m": 1.5498e-10, "distance_m": DISTANCE}
    rec = Reconstruction(obj, np.ones(obj.shape, np.float32), tiny_raw["xcoords"] + 2, tiny_raw["ycoords"] + 1,
                         np.array([1.0, 2.0]), geometry)
    args = ("scan", rec, tiny_raw["probeGuess"], np.arange(36), 2e5,
            {"loss_epochs": np.arange(3), "loss_values": np.array([3.0, 2.0, 1.5])})
    write_product(tmp_path / "a.h5", *args)
    time.sleep(1.1)  # HDF5 time stamps have a resolution of one second
    write_product(tmp_path / "b.h5", *args)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["object"].shape == (1, *obj.shape) and f["object"].dtype == np.complex64
        assert f["probe"].shape == (1, 32, 32) and f["probe"].dtype == np.complex64
        assert f.attrs["probe_energy_eV"] == pytest.approx(8000, rel=1e-3)
        assert f.attrs["detector_object_distance_m"] == DISTANCE and f.attrs["pixel_size_known"] == 1
        for key in ("name", "comments", "exposure_time_s", "probe_photon_count"):
            assert key in f.attrs
        assert f["object"].attrs["pixel_width_m"] == 2 * PIXEL and f["probe"].attrs["pixel_height_m"] == PIXEL
        np.testing.assert_allclose(f["probe_position_x_m"][()], 2e-6 + 2 * PIXEL * tiny_raw["xcoords"])
        np.testing.assert_allclose(f["probe_position_y_m"][()], 1e-6 + PIXEL * tiny_raw["ycoords"])
        # ptychodus maps pixel (row, column) to centre + pixel * (index - size / 2)
        h, w = obj.shape
        assert f["object"].attrs["center_x_m"] == pytest.approx(2e-6 + 2 * PIXEL * (w / 2 - 2))
        assert list(f["loss_values"][()]) == [3.0, 2.0, 1.5] and f["object_layer_spacing_m"].shape == (0,)


def convert(source, out, *flags):
    return subprocess.run([sys.executable, str(REPO / "scripts/convert.py"), str(source), str(out), *flags],
                          capture_output=True, text=True, timeout=60)


BAD = {  # case -> (changes to the CXI file, the problem the error must name)
    "no data": ({"entry_1/data_1/data": None}, "no diffraction data: looked for /entry_1/data_1/data"),
    "zero energy": ({"entry_1/instrument_1/source_1/energy": 0.0}, "source energy is 0 J"),
    "energy in eV": ({"entry_1/instrument_1/source_1/energy": 8000.0}, "CXI stores joules"),
    "no distance": ({"entry_1/instrument_1/detector_1/distance": None}, "no detector distance"),
    "2-D data": ({"entry_1/data_1/data": np.ones((40, 48))}, "must be a 3/4-D real array, got float64 (40, 48)"),
    "too few positions": ({"entry_1/data_1/translation": np.zeros((30, 3))},
                          "translations has shape (30, 3); the patterns need (36, 3)"),
    "mask shape": ({"entry_1/instrument_1/detector_1/mask": np.zeros((5, 5))}, "mask has shape (5, 5); the patterns need (40, 48)"),
    "probe too big": ({"entry_1/instrument_1/source_1/illumination": np.ones((64, 64), complex)},
                      "no larger than the 40x48 detector"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_cxi_fails_with_one_line_and_no_output(tmp_path, tiny_raw, case):
    change, problem = BAD[case]
    path = write_cxi(tmp_path / "bad.cxi", tiny_raw, **change)
    proc = convert(path, tmp_path / "out" / "bad.npz", "--flip-x")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"error: {path}: ") and problem in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_bad_ptychodus_folder_and_non_hdf5_file(tmp_path, tiny_raw):
    folder = write_ptychodus(tmp_path / "scan", tiny_raw)
    (folder / "product-in.h5").unlink()
    proc = convert(folder, tmp_path / "o.npz")
    assert proc.returncode == 1 and proc.stderr.strip() == (
        f"error: {folder}: no ptychodus product: expected product-in.h5 or product.h5 beside diffraction.h5")
    junk = tmp_path / "junk.cxi"
    junk.write_text("not hdf5")
    proc = convert(junk, tmp_path / "o.npz")
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: {junk}: not a readable HDF5 file")
    assert not (tmp_path / "o.npz").exists()


MICRO = {  # one short training: enough to go through every stage
    "data": {"n_groups": 16},
    "model": {"width": 8},
    "train": {"max_epochs": 2, "batch_size": 8},
    "infer": {"batch_size": 16},
    "solver": {"iterations": 20, "refine_iterations": 5, "batch_size": 8},
    "execution": {"threads": 1, "accelerator": "cpu"},
    # cxiscan's translations have x negated; ptyscan is reconstructed by cxiscan's model
    "datasets": {"cxiscan": {"flip_x": True}, "ptyscan": {"model": "cxiscan"}},
}


DETECTOR = ScanSpec(n=64, rows=8, cols=8, step=8.0, nphotons=2e5, seed=3, object_seed=5)  # M = N = 64


def write_detector_scan(folder: Path, raw) -> None:
    """detector.cxi as an Eiger master file: its frames in detector_data_000001.h5 beside
    it, compressed with Bitshuffle/LZ4, reached by an external link; as many patterns as
    pixels along a side, the stack order of which convert settles."""
    import hdf5plugin

    master = write_cxi(folder / "detector.cxi", raw, flip_x=False)
    with h5py.File(master, "a") as f:
        frames = f["entry_1/data_1/data"][()]
        del f["entry_1/data_1/data"]
        f["entry_1/data_1/data"] = h5py.ExternalLink("detector_data_000001.h5", "/entry/data/data")
    with h5py.File(folder / "detector_data_000001.h5", "w") as f:
        f.create_dataset("entry/data/data", data=frames, chunks=(1, *frames.shape[1:]),
                         **hdf5plugin.Bitshuffle(cname="lz4"))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    import yaml
    from conftest import TINY
    from helpers import copy_repo, snakemake

    raw = simulate(TINY)
    work = copy_repo(tmp_path_factory.mktemp("byod"))
    write_cxi(work / "resources/cxiscan.cxi", raw, flip_x=True)
    write_ptychodus(work / "resources/ptyscan", raw)
    write_detector_scan(work / "resources", simulate(DETECTOR))
    (work / "micro.yaml").write_text(yaml.safe_dump(MICRO))
    targets = [f"results/recon/{d}.{ext}" for d in ("cxiscan", "ptyscan", "detector") for ext in ("png", "h5")]
    targets += ["results/baseline/cxiscan.png", "results/refined/cxiscan.png", "results/compare/cxiscan.png",
                "results/metrics/cxiscan.json", "results/probe/cxiscan.png"]
    snakemake(work, *targets, "results/train/cxiscan/loss.png", "--cores", "2", "--configfile", "micro.yaml")
    return work, raw


@pytest.mark.parametrize("scan", ["cxiscan", "ptyscan"])
def test_beamline_scan_goes_through_snakemake_to_png_and_product(pipeline, scan):
    work, raw = pipeline
    assert (work / f"results/recon/{scan}.png").read_bytes()[:4] == b"\x89PNG"
    assert (work / f"results/imported/{scan}.npz.prov.json").exists()
    rec = np.load(work / f"results/recon/{scan}.npz")
    assert rec["amplitude"].dtype == np.float32 and rec["phase"].dtype == np.float32
    np.testing.assert_allclose(rec["pixel_size_m"], [PIXEL, PIXEL], rtol=1e-9)
    with h5py.File(work / f"results/recon/{scan}.h5") as f:
        h, w = rec["object"].shape
        assert f["object"].shape == (1, h, w) and f["object"].dtype == np.complex64
        assert f["probe"].shape == (1, 32, 32) and f["probe"].dtype == np.complex64
        assert f.attrs["name"] == scan and f.attrs["pixel_size_known"] == 1
        assert f.attrs["probe_energy_eV"] == pytest.approx(ENERGY_EV, rel=1e-9)
        assert f.attrs["detector_object_distance_m"] == pytest.approx(DISTANCE)
        for ds in ("object", "probe"):
            assert f[ds].attrs["pixel_width_m"] == pytest.approx(PIXEL, rel=1e-9)
            assert f[ds].attrs["pixel_height_m"] == pytest.approx(PIXEL, rel=1e-9)
        # positions in metres, in the file's own frame (after the configured flip):
        # within 0.01 px of the truth
        x0, y0 = (5e-6, -2e-6) if scan == "ptyscan" else (0.0, 3e-6)
        assert np.abs(f["probe_position_x_m"][()] - (x0 + PIXEL * raw["xcoords"])).max() < 0.01 * PIXEL
        assert np.abs(f["probe_position_y_m"][()] - (y0 + PIXEL * raw["ycoords"])).max() < 0.01 * PIXEL
        assert list(f["probe_position_indexes"][()]) == list(range(36))
        assert list(f["loss_epochs"][()]) == [0, 1] and np.all(np.isfinite(f["loss_values"][()]))
        # the object's centre puts every position inside it, where ptychodus expects it
        cx = (f["probe_position_x_m"][()] - f["object"].attrs["center_x_m"]) / PIXEL + w / 2
        np.testing.assert_allclose(cx, rec["xcoords"], atol=1e-6)


def test_a_detector_master_file_with_compressed_frames_beside_it_runs_with_no_settings(pipeline):
    """M = N, frames in an external file, compressed: the scan needs no dataset setting."""
    work, _ = pipeline
    assert (work / "results/recon/detector.png").read_bytes()[:4] == b"\x89PNG"
    raw = simulate(DETECTOR)
    with np.load(work / "results/imported/detector.npz") as imported:
        assert json.loads(str(imported["import_notes"]))["files"] == ["detector.cxi", "detector_data_000001.h5"]
    with np.load(work / "results/canonical/detector.npz") as canonical:
        assert canonical["diffraction"].shape == (64, 64, 64)
        np.testing.assert_allclose(canonical["xcoords"] - canonical["xcoords"].min(),
                                   raw["xcoords"] - raw["xcoords"].min(), atol=1e-6)


def test_loss_curve_figure(pipeline):
    work, _ = pipeline
    assert (work / "results/train/cxiscan/loss.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("method", ["recon", "baseline", "refined"])
def test_every_method_writes_a_reconstruction_with_origin_geometry_and_a_scale_bar(pipeline, method):
    """The network, the baseline and the refinement write one file type; it carries the
    canvas origin and the scan's pixel size, so each render draws the scale bar."""
    import json
    from ptycho_lib.render import render

    work, _ = pipeline
    rec = Reconstruction.load(work / f"results/{method}/cxiscan.npz")
    assert rec.origin.shape == (2,) and rec.pixel_size_m == pytest.approx(PIXEL, rel=1e-9)
    assert set(rec.geometry) == {"wavelength_m", "distance_m", "detector_pixel_size_m", "pixel_size_m", "origin_m"}
    png = work / f"results/{method}/cxiscan.png"
    settings = json.loads(png.with_name(png.name + ".prov.json").read_text())["config"]
    with_bar, without = work / f"{method}-bar.png", work / f"{method}-plain.png"
    render(rec.object, rec.region, settings["title"], with_bar, settings["dpi"], rec.pixel_size_m)
    render(rec.object, rec.region, settings["title"], without, settings["dpi"], None)
    assert png.read_bytes() == with_bar.read_bytes() != without.read_bytes()


def test_the_three_methods_side_by_side(pipeline):
    work, _ = pipeline
    png = work / "results/compare/cxiscan.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    inputs = json.loads(png.with_name(png.name + ".prov.json").read_text())["inputs"]
    assert sorted(Path(v["path"]).parent.name for v in inputs.values()) == ["baseline", "recon", "refined"]


def test_a_scan_without_a_reference_is_scored_by_the_figures_that_need_none(pipeline):
    """A user's own scan has no objectGuess: the metrics table holds each method's
    Poisson NLL per photon (the refinement's held-out one too), and no SSIM."""
    work, _ = pipeline
    table = json.loads((work / "results/metrics/cxiscan.json").read_text())
    assert sorted(table) == ["baseline", "recon", "refined"]
    for name, row in table.items():
        assert row["nll_per_photon"] > 0 and "phase_ssim" not in row, name
    assert table["refined"]["heldout_nll_per_photon"] > 0
    assert (work / "results/metrics/cxiscan.png").read_bytes()[:4] == b"\x89PNG"


def test_the_probe_figure_is_drawn_from_the_scan(pipeline):
    work, _ = pipeline
    png = work / "results/probe/cxiscan.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    inputs = json.loads(png.with_name(png.name + ".prov.json").read_text())["inputs"]
    assert inputs["data"]["path"] == "results/canonical/cxiscan.npz"


def test_npz_scan_product_says_its_pixel_size_is_unknown(tmp_path, tiny_raw):
    """A scan without geometry: 1 m stands for one object pixel, and the file says so."""
    from ptycho_lib.contract import canonicalise
    from ptycho_lib.io import write_npz
    import product

    canonical = canonicalise(tiny_raw, "tiny.npz")
    write_npz(tmp_path / "canonical.npz", canonical)
    x, y = canonical["xcoords"] + 1, canonical["ycoords"] + 2
    obj = canonical["objectGuess"]
    Reconstruction(obj, np.ones(obj.shape, np.float32), x, y, np.array([2.0, 1.0])).save(tmp_path / "recon.npz")
    product.main([str(tmp_path / "recon.npz"), str(tmp_path / "canonical.npz"), str(tmp_path / "p.h5")])
    with h5py.File(tmp_path / "p.h5") as f:
        assert f.attrs["pixel_size_known"] == 0 and f["object"].attrs["pixel_width_m"] == 1.0
        assert "unknown" in f.attrs["comments"] and f["loss_values"].shape == (0,)
        np.testing.assert_allclose(f["probe_position_x_m"][()], canonical["xcoords"])


def test_a_converted_scan_with_as_many_patterns_as_pixels_needs_no_layout(tmp_path):
    """convert always writes (M, N, N); validate and transpose read it so even when M = N,
    where the stack order of a user's own NPZ would be ambiguous."""
    from dataclasses import replace
    from conftest import TINY
    from helpers import copy_repo, snakemake

    raw = simulate(replace(TINY, rows=4, cols=8))  # 32 patterns of 32 x 32
    work = copy_repo(tmp_path)
    write_cxi(work / "resources/square.cxi", raw, flip_x=False)
    # a band of two whole rows for validation: the default 10% (3 patterns) is too few for gridsize 2
    snakemake(work, "results/canonical/square.npz", "--cores", "1", "--config", "data={val_fraction: 0.25}")
    with np.load(work / "results/imported/square.npz") as imported, \
            np.load(work / "results/canonical/square.npz") as canonical:
        check_round_trip(imported, raw)  # the patterns in their order, stacked first
        np.testing.assert_array_equal(canonical["diffraction"], imported["diffraction"])


def test_a_report_of_the_scans_the_user_built(pipeline):
    """config/config.yaml lists fly001 and fly002, which this user never built: the
    report of the targets they did build works (the README's form)."""
    from helpers import snakemake

    work, _ = pipeline
    snakemake(work, "results/recon/cxiscan.png", "results/recon/ptyscan.png", "--report", "report.html",
              "--configfile", "micro.yaml")
    html = (work / "report.html").read_text()
    assert "cxiscan.png" in html and "ptyscan.png" in html and "fly001" not in html


def _writer_layouts(raw) -> dict[str, dict]:
    """Each common writer's translations for the simulated scan (probe at x, y metres on
    the sample), as docs/usage.md describes them: {cxi path: array or soft link}."""
    x, y = raw["xcoords"] * PIXEL, raw["ycoords"] * PIXEL
    probe = np.stack([x, y, np.zeros_like(x)], 1)
    linked = h5py.SoftLink("/entry_1/sample_1/geometry_1/translation")
    return {
        "ptychodus, ptypy": {"entry_1/data_1/translation": probe},
        "PyNX": {"entry_1/data_1/translation": linked, "entry_1/sample_1/geometry_1/translation": probe.T},
        "cdtools": {"entry_1/data_1/translation": linked, "entry_1/sample_1/geometry_1/translation": probe,
                    "entry_1/instrument_1/detector_1/translation": linked},
        "the CXI definition": {"entry_1/data_1/translation": -probe},
    }


def _documented_settings() -> dict[str, dict]:
    """Writer -> dataset settings, from the table in docs/usage.md."""
    text = (REPO / "docs/usage.md").read_text().split("### Position conventions of common writers")[1]
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 3 and cells[0] not in ("writer", "---"):
            writer = cells[0].split(" (")[0]
            rows[writer] = dict(kv.split(": ") for kv in re.findall(r"`(\w+: \w+)`", cells[2]))
    return rows


def test_each_documented_writer_convention_gives_the_true_positions(tmp_path, tiny_raw):
    settings = _documented_settings()
    layouts = _writer_layouts(tiny_raw)
    assert set(settings) == set(layouts)
    for writer, layout in layouts.items():
        path = tmp_path / f"{writer.split(',')[0]}.cxi"
        write_cxi(path, tiny_raw, flip_x=False, **layout)
        opts = DatasetConfig(**{k: v == "true" for k, v in settings[writer].items()})
        out = read_cxi(path, opts)
        for got, truth in ((out["xcoords"], tiny_raw["xcoords"]), (out["ycoords"], tiny_raw["ycoords"])):
            np.testing.assert_allclose(got - got.min(), truth - truth.min(), atol=1e-6, err_msg=writer)
