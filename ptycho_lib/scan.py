"""The canonical scan as every stage after transpose sees it (docs/design.md, "Data
contract"): patterns, probe, positions, the photon scale and, when known, the
reference object and the instrument geometry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .geometry import UNMEASURED
from .io import InputError, read_npz

CANONICAL_KEYS = ("diffraction", "probeGuess", "xcoords", "ycoords", "nphotons")
# optional geometry, carried to the canonical file and the reconstruction when present:
# key -> shape; the (2,) ones are (y, x). origin_m: metres of object pixel (0, 0), so
# x metres = origin_m[1] + pixel_size_m[1] * xcoords (see ptycho_lib/formats.py)
GEOMETRY = {"wavelength_m": (), "distance_m": (), "detector_pixel_size_m": (2,), "pixel_size_m": (2,),
            "origin_m": (2,)}


@dataclass
class Scan:
    amplitude: np.ndarray  # (M, N, N) float32, sqrt(counts)
    probe: np.ndarray  # (N, N) complex64, as given in the file
    x: np.ndarray  # (M,) float64, object pixels
    y: np.ndarray
    nphotons: float  # mean total counts per pattern
    obj: np.ndarray | None = None  # reference object when present
    geometry: dict = field(default_factory=dict)  # the GEOMETRY keys the file has
    bad_pixels: np.ndarray | None = None  # (N, N) bool, True where the detector measured nothing

    @property
    def n(self) -> int:
        return self.amplitude.shape[-1]

    @property
    def measured(self) -> np.ndarray:
        """The amplitudes with the bad pixels marked unmeasured (mark_unmeasured)."""
        return mark_unmeasured(self.amplitude, self.bad_pixels)

    @property
    def positions(self) -> np.ndarray:
        """(M, 2) as (y, x): the (row, column) order of every shift in this library."""
        return np.stack([self.y, self.x], 1)

    def first(self, count: int) -> Scan:
        """The scan cut to its first `count` patterns (0 = all)."""
        if not count or count >= len(self.x):
            return self
        return dataclasses.replace(self, amplitude=self.amplitude[:count], x=self.x[:count], y=self.y[:count])


def load_scan(path, mmap: bool = False) -> Scan:
    """The canonical scan in `path`; with mmap the patterns stay in the file (a
    read-only memory map, when transpose stored them uncompressed as it does) and are
    read as they are used."""
    raw = read_npz(path, mmap_keys=("diffraction",) if mmap else ())
    missing = [k for k in CANONICAL_KEYS if k not in raw]
    if missing:
        raise InputError(path, f"not a canonical file (missing {', '.join(missing)}); run transpose first")
    return scan_from(raw)


def scan_from(canonical: dict) -> Scan:
    """A Scan from the arrays of a canonical file (contract.canonicalise's output)."""
    c = canonical
    return Scan(c["diffraction"], c["probeGuess"], c["xcoords"], c["ycoords"], float(c["nphotons"]),
                c.get("objectGuess"), {k: c[k] for k in GEOMETRY if k in c}, c.get("bad_pixels"))


def mark_unmeasured(amplitude: np.ndarray, bad_pixels: np.ndarray | None) -> np.ndarray:
    """Amplitudes (..., N, N) with the bad pixels set to geometry.UNMEASURED, the mark
    every loss and solver update leaves out (a copy; `amplitude` itself when there are
    no bad pixels)."""
    if bad_pixels is None:
        return amplitude
    return np.where(bad_pixels, np.float32(UNMEASURED), amplitude).astype(amplitude.dtype)


def lit_fraction(probe: np.ndarray, bad_pixels: np.ndarray | None) -> float:
    """The share of the probe's far-field intensity (zero frequency at N/2, as the
    patterns) that falls on measured pixels: the photons per pattern are the measured
    ones divided by it (a transparent object sends the light where the probe alone does)."""
    if bad_pixels is None:
        return 1.0
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(np.asarray(probe, np.complex128)))) ** 2
    return float(spectrum[~bad_pixels].sum() / spectrum.sum())


def split_rows(y: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Hold out the band of the scan with the largest y (whole rows of a raster scan), so
    no validation position lies inside the training region; returns (train, val)."""
    order = np.argsort(y, kind="stable")
    n_val = int(round(len(y) * val_fraction))
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    return np.sort(order[: len(y) - n_val]), np.sort(order[len(y) - n_val:])
