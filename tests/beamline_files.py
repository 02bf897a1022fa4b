"""CXI files and ptychodus folders written with h5py from the simulator's known truth,
laid out as the beamline tools write them (shared by the format and hostile-input tests)."""

from pathlib import Path

import h5py
import numpy as np

from ptycho_lib.formats import EV, HC, write_product
from ptycho_lib.reconstruction import Reconstruction

PIXEL = 10e-9  # object pixel of the test geometry, m
ENERGY_EV = 8000.0
DISTANCE = 2.0  # m
PAD = (4, 8)  # detector rows / columns added on each side of the N x N patterns
HOT = [(1, 2), (20, 30), (35, 11)]  # bad pixels (rows, columns of the padded detector)


def detector_pixel(n):
    return HC / (ENERGY_EV * EV) * DISTANCE / (n * PIXEL)


def padded_counts(raw):
    """(M, N + 2*PAD[0], N + 2*PAD[1]) uint16 counts around the patterns, hot pixels set,
    and the mask that marks them."""
    counts = np.moveaxis(raw["diff3d"], -1, 0)
    m, n, _ = counts.shape
    det = np.zeros((m, n + 2 * PAD[0], n + 2 * PAD[1]), np.uint16)
    det[:, PAD[0]:PAD[0] + n, PAD[1]:PAD[1] + n] = counts
    mask = np.zeros(det.shape[1:], np.uint8)
    for r, c in HOT:
        det[:, r, c] = 60000
        mask[r, c] = 1
    return det, mask


def write_cxi(path, raw, flip_x=True, **override):
    """A CXI file as ptychodus and ptypy read it; x translations negated when flip_x (the sign
    the reader must be told about). override: {cxi path: value} replaces or, with None,
    deletes an entry."""
    det, mask = padded_counts(raw)
    n = raw["probeGuess"].shape[0]
    x, y = raw["xcoords"] * PIXEL, raw["ycoords"] * PIXEL
    entries = {
        "entry_1/data_1/data": det,
        "entry_1/data_1/translation": np.stack([-x if flip_x else x, y + 3e-6, np.zeros_like(x)], 1),
        "entry_1/instrument_1/source_1/energy": ENERGY_EV * EV,
        "entry_1/instrument_1/detector_1/distance": DISTANCE,
        "entry_1/instrument_1/detector_1/x_pixel_size": detector_pixel(n),
        "entry_1/instrument_1/detector_1/y_pixel_size": detector_pixel(n),
        "entry_1/instrument_1/detector_1/mask": mask,
        "entry_1/instrument_1/source_1/illumination": raw["probeGuess"],
    }
    entries.update(override)
    with h5py.File(path, "w") as f:
        f.attrs["cxi_version"] = 150
        for key, value in entries.items():
            if value is not None:
                f[key] = value
    return Path(path)


def write_ptychodus(folder, raw):
    """diffraction.h5 (patterns, bad_pixels) and product-in.h5 (written by our own
    product writer: the same layout ptychodus reads) for the simulated scan."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    det, mask = padded_counts(raw)
    with h5py.File(folder / "diffraction.h5", "w") as f:
        f["patterns"] = det
        f["bad_pixels"] = mask.astype(bool)
    geometry = {"pixel_size_m": (PIXEL, PIXEL), "origin_m": (-2e-6, 5e-6),
                "wavelength_m": HC / (ENERGY_EV * EV), "distance_m": DISTANCE}
    shape = raw["objectGuess"].shape
    rec = Reconstruction(np.ones(shape, np.complex64), np.ones(shape, np.float32), raw["xcoords"], raw["ycoords"],
                         np.zeros(2), geometry)
    write_product(folder / "product-in.h5", "in", rec, raw["probeGuess"], np.arange(len(raw["xcoords"])), 1e6,
                  {"loss_values": np.zeros(0)})
    return folder
