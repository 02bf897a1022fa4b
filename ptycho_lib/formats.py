"""Beamline files in, ptychodus products out.

Readers turn a CXI file (the interchange format of ptychodus, ptypy, cdtools and PyNX;
NeXus NXcxi_ptycho is compatible) or a ptychodus pair (diffraction.h5 + product HDF5)
into a raw NPZ of the data contract (docs/design.md, "Data contract"): amplitudes cropped to N x N
around the beam centre (bad pixels zeroed and marked in `bad_pixels`), the probe, positions in object pixels,
`nphotons`, and the geometry as the optional keys of scan.GEOMETRY.
`write_product` writes a reconstruction in ptychodus's HDF5 product layout.

Geometry: wavelength = h c / E; object pixel size = wavelength * distance / (N * detector
pixel); a position of x metres is x / pixel size object pixels, shifted so the scan's
first row and column of windows sit MARGIN pixels inside the canvas. `origin_m` keeps
the shift: x metres = origin_m[1] + pixel_size_m[1] * xcoords (after any flip/transpose).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from .confined import ConfinedFile
from .config import DatasetConfig
from .file_types import PTYCHODUS_PRODUCTS, ptychodus_product
from .io import InputError, atomic_path, sha256_bytes, sha256_file
from .scan import lit_fraction

HC = 6.62607015e-34 * 299792458.0  # Planck constant x speed of light, J m
EV = 1.602176634e-19  # J per electronvolt
MARGIN = 4  # object pixels between the outermost windows and the canvas edge

_DET = "entry_1/instrument_1/detector_1/"
_SRC = "entry_1/instrument_1/source_1/"
CXI = {  # what the reader looks for, in order of preference
    "data": ("entry_1/data_1/data", _DET + "data"),
    "translation": ("entry_1/data_1/translation", "entry_1/sample_1/geometry_1/translation",
                    _DET + "translation"),
    "energy": (_SRC + "energy",),
    "distance": (_DET + "distance",),
    "x_pixel_size": (_DET + "x_pixel_size",),
    "y_pixel_size": (_DET + "y_pixel_size",),
    "mask": (_DET + "mask",),
    "probe": (_SRC + "illumination", _SRC + "probe", "entry_1/instrument_1/probe", "entry_1/probe"),
}


# plausible ranges of the geometry, so that a value in the wrong unit is caught by name
ENERGY_EV = (10.0, 1e5)  # photon energy, EUV to hard X-rays
DISTANCE_M = (1e-3, 100.0)  # sample to detector
DETECTOR_PIXEL_M = (1e-7, 1e-2)
OBJECT_PIXEL_M = (1e-12, 1e-3)
MAX_CANVAS = 1 << 16  # object pixels along one side: positions spanning more are in the wrong unit


def _find(f: ConfinedFile, names, what, required=True):
    """The first of `names` that is a dataset in f, else None or an InputError listing
    where the reader looked."""
    for name in names:
        item = f.dataset(name, what)
        if item is not None:
            return item
    if required:
        raise InputError(f.path, f"no {what}: looked for " + ", ".join("/" + n for n in names))
    return None


def _in_range(path, value, what, unit, bounds, hint="") -> float:
    """A positive number within `bounds` (a wrong unit is the usual cause otherwise)."""
    try:
        v = float(np.asarray(value).reshape(-1)[0]) if np.size(value) else float("nan")
    except (TypeError, ValueError):
        raise InputError(path, f"{what} is not a number ({value!r})") from None
    if not np.isfinite(v) or v <= 0:
        raise InputError(path, f"{what} is {v:g} {unit}; it must be a positive number")
    lo, hi = bounds
    if not lo <= v <= hi:
        raise InputError(path, f"{what} is {v:g} {unit}, outside the plausible {lo:g} to {hi:g} {unit}; "
                         f"check its unit{hint}")
    return v


def _scalar(f: ConfinedFile, ds: h5py.Dataset, what):
    """The first value of a (normally scalar) dataset, reading nothing more."""
    if ds.dtype.kind not in "uif":
        raise InputError(f.path, f"{what} is not a number ({ds.dtype})")
    return f.read(ds, what, (0,) * ds.ndim) if ds.size else np.array([])


def _array(path, ds: h5py.Dataset, what, ndim, kinds="uif") -> h5py.Dataset:
    """ds itself, after checking its dtype and rank from the header (nothing read)."""
    if ds.dtype.kind not in kinds or ds.ndim not in ndim:
        raise InputError(path, f"{what} must be a {'/'.join(map(str, ndim))}-D "
                         f"{'complex' if kinds == 'c' else 'real'} array, got {ds.dtype} {ds.shape}")
    return ds


def _shaped(f: ConfinedFile, ds: h5py.Dataset, what, shape) -> np.ndarray:
    """ds read whole, once its shape (from the header) is the one the patterns imply."""
    if tuple(ds.shape) != tuple(shape):
        raise InputError(f.path, f"{what} has shape {tuple(ds.shape)}; the patterns need {tuple(shape)}")
    return f.read(ds, what)


def _probe(f: ConfinedFile, ds: h5py.Dataset | None, detector: tuple) -> np.ndarray | None:
    """The first (dominant) mode of a probe (modes, N, N), at most the detector's size."""
    if ds is None:
        return None
    if ds.ndim < 2 or ds.dtype.kind not in "uifc" or ds.shape[-1] != ds.shape[-2] or ds.shape[-1] > max(detector):
        raise InputError(f.path, f"probe must be a square complex array (modes, N, N) no larger than the "
                         f"{detector[0]}x{detector[1]} detector, got {ds.dtype} {ds.shape}")
    return f.read(ds, "probe", (0,) * (ds.ndim - 2))


def read_cxi(path, opts: DatasetConfig = DatasetConfig()) -> dict:
    """A CXI file as a raw NPZ dict (see the module docstring)."""
    path = Path(path)
    with ConfinedFile(path) as f:
        data = _array(path, _find(f, CXI["data"], "diffraction data"), "diffraction data", (3, 4))
        m, detector = int(np.prod(data.shape[:-2])), data.shape[-2:]
        t = _array(path, _find(f, CXI["translation"], "translations"), "translations", (2,))
        # (M, 3) as CXI has it; (3, M) as PyNX writes it (docs/usage.md, "Position conventions")
        stacked_last = t.shape[0] in (2, 3) and t.shape[1] == m != t.shape[0]
        if (t.shape[::-1] if stacked_last else t.shape)[1:] not in ((2,), (3,)):
            raise InputError(path, f"translations have shape {t.shape}; expected ({m}, 3) in metres")
        t = _shaped(f, t, "translations", t.shape if stacked_last else (m, t.shape[1]))
        t = t.T if stacked_last else t

        def geometry(key, what, unit, bounds, hint=""):
            return _in_range(path, _scalar(f, _find(f, CXI[key], what), what), what, unit, bounds, hint)
        energy_j = geometry("energy", "source energy", "J", tuple(e * EV for e in ENERGY_EV),
                            " (CXI stores joules: 1 keV is 1.602e-16 J)")
        distance = geometry("distance", "detector distance", "m", DISTANCE_M, " (CXI stores metres)")
        dx = geometry("x_pixel_size", "detector x_pixel_size", "m", DETECTOR_PIXEL_M, " (CXI stores metres)")
        dy = geometry("y_pixel_size", "detector y_pixel_size", "m", DETECTOR_PIXEL_M, " (CXI stores metres)")
        mask = _find(f, CXI["mask"], "mask", required=False)
        mask = None if mask is None else _shaped(f, _array(path, mask, "mask", (2,), "buif"), "mask", detector)
        probe = _probe(f, _find(f, CXI["probe"], "probe", required=False), detector)
        optics = {"wavelength": HC / energy_j, "distance": distance, "detector_pixel": (dy, dx)}
        return _assemble(f, data, mask, probe, (t[:, 0], t[:, 1]), optics, opts, f.files)


def ptychodus_files(folder) -> tuple[Path, Path]:
    """(diffraction.h5, product file) of a ptychodus folder (or of the folder holding
    the diffraction.h5 given)."""
    folder = Path(folder)
    folder = folder.parent if folder.is_file() else folder
    product = ptychodus_product(folder)
    if product.is_file():
        return folder / "diffraction.h5", product
    raise InputError(folder, f"no ptychodus product: expected {' or '.join(PTYCHODUS_PRODUCTS)} "
                     "beside diffraction.h5")


def read_ptychodus(diffraction, product, opts: DatasetConfig = DatasetConfig()) -> dict:
    """A ptychodus diffraction file (`patterns`, optional `bad_pixels`) and product file
    (energy, distance, positions in metres, probe with its pixel size) as a raw NPZ dict."""
    diffraction, product = Path(diffraction), Path(product)
    with ConfinedFile(diffraction) as d, ConfinedFile(product) as f:
        data = _array(diffraction, _find(d, ("patterns",), "dataset"), "patterns", (3,))
        m, detector = data.shape[0], data.shape[-2:]

        def attr(name, unit, bounds, obj=f.root, hint=""):
            if name not in obj.attrs:
                raise InputError(product, f"no attribute {name} on {obj.name}")
            return _in_range(product, obj.attrs[name], name, unit, bounds, hint)

        def positions(name):
            return _shaped(f, _array(product, _find(f, (name,), "dataset"), name, (1,)), name, (m,))
        energy_ev = attr("probe_energy_eV", "eV", ENERGY_EV, hint=" (8 keV is 8000 eV)")
        distance = attr("detector_object_distance_m", "m", DISTANCE_M)
        x, y = positions("probe_position_x_m"), positions("probe_position_y_m")
        probe_ds = _find(f, ("probe",), "dataset")
        pixel = (attr("pixel_height_m", "m", OBJECT_PIXEL_M, probe_ds), attr("pixel_width_m", "m", OBJECT_PIXEL_M, probe_ds))
        probe = _probe(f, probe_ds, detector)
        mask = _find(d, ("bad_pixels",), "bad pixels", required=False)
        mask = None if mask is None else _shaped(d, _array(diffraction, mask, "bad_pixels", (2,), "buif"),
                                                 "bad_pixels", detector)
        optics = {"wavelength": HC / (energy_ev * EV), "distance": distance, "object_pixel": pixel}
        return _assemble(d, data, mask, probe, (x, y), optics, opts, d.files + f.files)


def linked_files(source, fmt: str) -> list[Path]:
    """The files in the scan's folder that its CXI file or ptychodus pair link to (the
    data files of a detector master file), found from the links alone, for the
    workflow's rerun logic; problems are left for convert to report."""
    try:
        files = ptychodus_files(source) if fmt == "ptychodus" else (Path(source),)
    except InputError:
        return []
    names = [("patterns", "bad_pixels"), ("probe",)] if fmt == "ptychodus" else [sum(CXI.values(), ())]
    found = []
    for path, wanted in zip(files, names):
        try:
            with ConfinedFile(path) as f:
                for name in wanted:
                    try:
                        f.dataset(name, "dataset")
                    except InputError:
                        pass
                found += f.files[1:]
        except InputError:
            pass
    return found


def files_sha256(files: list[Path]) -> str:
    """What the `sha256` setting pins: the SHA-256 of a scan's one file, or, when it
    links to data files, of the lines `<sha256>  <name>` of every file read, by name."""
    if len(files) == 1:
        return sha256_file(files[0])
    lines = sorted(f"{sha256_file(p)}  {Path(p).name}\n" for p in files)
    return sha256_bytes("".join(lines).encode())


def _assemble(f: ConfinedFile, data: h5py.Dataset, mask, probe, positions_m, optics: dict, opts: DatasetConfig,
              files: list[Path]) -> dict:
    """The shared second half of both readers: crop (only the N x N window of each
    pattern is read from the file), mask, geometry, positions. positions_m: (x, y) in
    metres; optics: wavelength and distance (m), and the detector pixel or the object
    pixel (m, (y, x)), whichever the file gives; files: every file read."""
    path = f.path
    x_m, y_m = positions_m
    *lead, h, w = data.shape
    m = int(np.prod(lead))  # (M, H, W), or (rows, columns, H, W) of a raster scan
    n = opts.pattern_size or (probe.shape[0] if probe is not None else None)
    r, c = opts.beam_center if opts.beam_center is not None else (h // 2, w // 2)
    r, c = int(round(r)), int(round(c))
    if n is None:  # no probe: the largest multiple of 16 that fits around the beam centre
        n = 2 * min(r, h - r, c, w - c) // 16 * 16
    if n <= 0 or r - n // 2 < 0 or c - n // 2 < 0 or r + n // 2 > h or c + n // 2 > w:
        raise InputError(path, f"a {n}x{n} crop around the beam centre (row {r}, column {c}) does not fit "
                         f"the {h}x{w} detector; set beam_center or pattern_size")
    window = (slice(r - n // 2, r + n // 2), slice(c - n // 2, c + n // 2))
    # float64 counts, amplitudes and their float32 copy, roughly
    patterns = f.read(data, "diffraction data", (Ellipsis, *window), copies=3).reshape(m, n, n)
    if data.dtype.kind == "i" and patterns.min() < 0:
        raise InputError(path, f"diffraction data are signed integers with negative values (min {patterns.min()}): "
                         "counts with an offset subtracted; give the counts as measured, marking bad pixels")
    patterns = patterns.astype(np.float64)
    bad = None if mask is None or not np.any(mask[window]) else mask[window] != 0
    if bad is not None:
        patterns[:, bad] = 0
    if not np.all(np.isfinite(patterns)):
        raise InputError(path, "diffraction data contain NaN or Inf inside the crop (mark them as bad pixels)")
    patterns = np.clip(patterns, 0, None)  # background subtraction may leave small negatives
    amplitude = np.sqrt(patterns) if opts.measurement != "amplitude" else patterns
    estimated = probe is None
    if estimated:  # zero-phase estimate from the mean pattern (|FFT P|^2 = mean counts)
        spectrum = np.fft.ifftshift(np.sqrt(np.mean(amplitude**2, axis=0)))
        probe = np.fft.fftshift(np.fft.ifft2(spectrum, norm="ortho"))
    if probe.shape != (n, n):
        raise InputError(path, f"probe is {probe.shape[0]}x{probe.shape[1]} but patterns are cropped to "
                         f"{n}x{n}; set pattern_size to the probe's size")
    nphotons = float(np.mean(np.sum(amplitude**2, axis=(1, 2)))) / lit_fraction(probe, bad)
    wavelength, distance = optics["wavelength"], optics["distance"]
    # object pixel = wavelength * distance / (N * detector pixel), and the other way round
    det_pixel = optics.get("detector_pixel") or tuple(wavelength * distance / (n * p) for p in optics["object_pixel"])
    obj_pixel = optics.get("object_pixel") or tuple(wavelength * distance / (n * p) for p in det_pixel)
    x_m, y_m = np.asarray(x_m, np.float64), np.asarray(y_m, np.float64)
    if not (np.all(np.isfinite(x_m)) and np.all(np.isfinite(y_m))):
        raise InputError(path, "scan positions contain NaN or Inf")
    if opts.transpose_positions:
        x_m, y_m = y_m, x_m
    x_m, y_m = (-x_m if opts.flip_x else x_m), (-y_m if opts.flip_y else y_m)
    px, py = x_m / obj_pixel[1], y_m / obj_pixel[0]
    span = max(np.ptp(px), np.ptp(py))
    if span > MAX_CANVAS:
        raise InputError(path, f"the scan positions span {span:.3g} object pixels of {obj_pixel[1]:.3g} m, more than "
                         f"{MAX_CANVAS}: the positions or the pixel size are in the wrong unit (both are metres)")
    x0, y0 = px.min() - n / 2 - MARGIN, py.min() - n / 2 - MARGIN
    return {
        "diffraction": amplitude.astype(np.float32),
        "probeGuess": probe.astype(np.complex64),
        "xcoords": px - x0, "ycoords": py - y0,
        "scan_index": np.arange(m, dtype=np.int64),
        "nphotons": np.float64(nphotons),
        **({} if bad is None else {"bad_pixels": bad}),
        "wavelength_m": np.float64(wavelength), "distance_m": np.float64(distance),
        "detector_pixel_size_m": np.array(det_pixel, np.float64),
        "pixel_size_m": np.array(obj_pixel, np.float64),
        "origin_m": np.array([y0 * obj_pixel[0], x0 * obj_pixel[1]]),
        "import_notes": np.array(json.dumps({
            "source": Path(path).name, "files": [p.name for p in files], "detector": [h, w], "crop": [r - n // 2, c - n // 2, n],
            "bad_pixels": 0 if bad is None else int(bad.sum()),
            "probe": "estimated from the mean pattern" if estimated else "from file",
            "options": {"flip_x": opts.flip_x, "flip_y": opts.flip_y, "transpose": opts.transpose_positions}}, sort_keys=True)),
    }


def write_product(path, name: str, rec, probe: np.ndarray, indexes: np.ndarray, nphotons: float,
                  losses: dict[str, np.ndarray], comments: str = "") -> None:
    """A reconstruction (a ptycho_lib.reconstruction.Reconstruction: object, positions x,
    y on its canvas, canvas origin, geometry) as a ptychodus product HDF5 (object
    (1, H, W) and probe (1, N, N) complex64, positions in metres, losses per epoch),
    atomically and byte-reproducibly. Without `pixel_size_m` in the geometry the pixel
    is 1 m (sizes and positions in object pixels) and the root attribute
    pixel_size_known is 0."""
    obj, x, y, geometry, canvas_origin = rec.object, rec.x, rec.y, rec.geometry, rec.origin
    known = "pixel_size_m" in geometry
    ps = np.asarray(geometry.get("pixel_size_m", (1.0, 1.0)), np.float64)
    origin = np.asarray(geometry.get("origin_m", (0.0, 0.0)), np.float64)
    oy, ox = (float(v) for v in canvas_origin)
    h, w = obj.shape
    wavelength = float(geometry.get("wavelength_m", 0.0))
    obj = obj.astype(np.complex64)  # finite: Reconstruction refuses NaN and Inf
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
        def put(key, value):
            return f.create_dataset(key, data=value, track_times=False)
        f.attrs["name"] = name
        f.attrs["comments"] = comments
        f.attrs["detector_object_distance_m"] = float(geometry.get("distance_m", 0.0))
        f.attrs["probe_energy_eV"] = HC / wavelength / EV if wavelength > 0 else 0.0
        f.attrs["probe_photon_count"] = float(nphotons)
        f.attrs["exposure_time_s"] = 0.0
        f.attrs["mass_attenuation_m2_kg"] = 0.0
        f.attrs["tomography_angle_deg"] = 0.0
        f.attrs["pixel_size_known"] = np.int8(known)
        put("probe_position_indexes", np.asarray(indexes, np.int64))
        put("probe_position_x_m", origin[1] + ps[1] * (np.asarray(x, np.float64) - ox))
        put("probe_position_y_m", origin[0] + ps[0] * (np.asarray(y, np.float64) - oy))
        p = put("probe", np.asarray(probe, np.complex64)[None])
        p.attrs["pixel_width_m"], p.attrs["pixel_height_m"] = ps[1], ps[0]
        o = put("object", obj[None])
        o.attrs["center_x_m"] = origin[1] + ps[1] * (w / 2 - ox)
        o.attrs["center_y_m"] = origin[0] + ps[0] * (h / 2 - oy)
        o.attrs["pixel_width_m"], o.attrs["pixel_height_m"] = ps[1], ps[0]
        put("object_layer_spacing_m", np.zeros(0, np.float64))
        for key, values in losses.items():
            put(key, np.asarray(values))
