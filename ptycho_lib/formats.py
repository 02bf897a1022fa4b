"""Beamline files in, ptychodus products out.

Readers turn a CXI file (the interchange format of ptychodus, ptypy, cdtools and PyNX;
NeXus NXcxi_ptycho is compatible) or a ptychodus pair (diffraction.h5 + product HDF5)
into a raw NPZ of the data contract (docs/design.md, "Data contract"): amplitudes cropped to N x N
around the beam centre with bad pixels zeroed, the probe, positions in object pixels,
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

from .config import DatasetConfig
from .file_types import PTYCHODUS_PRODUCTS, ptychodus_product
from .io import InputError, atomic_path, available_memory, human_bytes

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


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise InputError(path, f"not a readable HDF5 file ({e})") from None


def _find(f: h5py.File, path, names, what, required=True):
    """The first of `names` that is a dataset in f (external links refused), else None
    or an InputError listing where the reader looked."""
    for name in names:
        try:
            link = f.get(name, getlink=True)
        except (KeyError, ValueError):
            link = None
        if link is None:
            continue
        if isinstance(link, h5py.ExternalLink):
            raise InputError(path, f"{what} /{name} is a link to another file; refusing to follow it")
        try:
            item = f[name]
        except KeyError:
            raise InputError(path, f"{what} /{name} is a dangling link") from None
        if not isinstance(item, h5py.Dataset):
            raise InputError(path, f"{what} /{name} is a group, not a dataset")
        return item
    if required:
        raise InputError(path, f"no {what}: looked for " + ", ".join("/" + n for n in names))
    return None


def _read(path, ds: h5py.Dataset, what, sel=()):
    """ds[sel]; a missing compression filter or damaged data become an InputError."""
    try:
        return ds[sel]
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read {what} ({e}); a missing compression filter "
                         "(bitshuffle, LZ4 ...) is added by `pip install hdf5plugin`") from None


def _positive(path, ds, what, unit) -> float:
    value = _read(path, ds, what) if isinstance(ds, h5py.Dataset) else ds
    try:
        v = float(np.asarray(value).reshape(-1)[0]) if np.size(value) else float("nan")
    except (TypeError, ValueError):
        raise InputError(path, f"{what} is not a number ({value!r})") from None
    if not np.isfinite(v) or v <= 0:
        raise InputError(path, f"{what} is {v:g} {unit}; it must be a positive number")
    return v


def _array(path, ds: h5py.Dataset, what, ndim, kinds="uif") -> h5py.Dataset:
    """ds itself, after checking its dtype and rank from the header (nothing read)."""
    if ds.dtype.kind not in kinds or ds.ndim not in ndim:
        raise InputError(path, f"{what} must be a {'/'.join(map(str, ndim))}-D "
                         f"{'complex' if kinds == 'c' else 'real'} array, got {ds.dtype} {ds.shape}")
    return ds


def read_cxi(path, opts: DatasetConfig = DatasetConfig()) -> dict:
    """A CXI file as a raw NPZ dict (see the module docstring)."""
    path = Path(path)
    with _open(path) as f:
        data = _find(f, path, CXI["data"], "diffraction data")
        _array(path, data, f"diffraction data {data.name}", (3, 4))
        t = _read(path, _array(path, _find(f, path, CXI["translation"], "translations"), "translations", (2,)),
                  "translations")
        energy_j = _positive(path, _find(f, path, CXI["energy"], "source energy"), "source energy", "J")
        distance = _positive(path, _find(f, path, CXI["distance"], "detector distance"), "detector distance", "m")
        dx = _positive(path, _find(f, path, CXI["x_pixel_size"], "detector x_pixel_size"),
                       "detector x_pixel_size", "m")
        dy = _positive(path, _find(f, path, CXI["y_pixel_size"], "detector y_pixel_size"),
                       "detector y_pixel_size", "m")
        mask = _find(f, path, CXI["mask"], "mask", required=False)
        mask = None if mask is None else _read(path, _array(path, mask, "mask", (2,), "buif"), "mask")
        probe = _find(f, path, CXI["probe"], "probe", required=False)
        probe = None if probe is None else _read(path, probe, "probe")
        if energy_j > 1e-12:  # a keV-sized number: someone wrote eV, not joules
            raise InputError(path, f"source energy is {energy_j:g} J, implausible: CXI stores joules "
                             f"({energy_j:g} eV would be {energy_j * EV:.4g} J)")
        if t.shape[1] not in (2, 3):
            raise InputError(path, f"translations have shape {t.shape}; expected (M, 3) in metres")
        optics = {"wavelength": HC / energy_j, "distance": distance, "detector_pixel": (dy, dx)}
        return _assemble(path, data, mask, probe, (t[:, 0], t[:, 1]), optics, opts)


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
    with _open(product) as f:
        def attr(name, unit, obj=f):
            if name not in obj.attrs:
                raise InputError(product, f"no attribute {name} on {obj.name}")
            return _positive(product, obj.attrs[name], name, unit)

        def positions(name):
            return _read(product, _array(product, _find(f, product, (name,), "dataset"), name, (1,)), name)
        energy_ev = attr("probe_energy_eV", "eV")
        distance = attr("detector_object_distance_m", "m")
        x, y = positions("probe_position_x_m"), positions("probe_position_y_m")
        probe_ds = _find(f, product, ("probe",), "dataset")
        pixel = (attr("pixel_height_m", "m", probe_ds), attr("pixel_width_m", "m", probe_ds))
        probe = _read(product, probe_ds, "probe")
    if len(x) != len(y):
        raise InputError(product, f"probe_position_x_m has {len(x)} entries but probe_position_y_m {len(y)}")
    with _open(diffraction) as f:
        data = _array(diffraction, _find(f, diffraction, ("patterns",), "dataset"), "patterns", (3,))
        mask = _find(f, diffraction, ("bad_pixels",), "bad pixels", required=False)
        mask = None if mask is None else _read(diffraction, _array(diffraction, mask, "bad_pixels", (2,), "buif"),
                                               "bad_pixels")
        optics = {"wavelength": HC / (energy_ev * EV), "distance": distance, "object_pixel": pixel}
        return _assemble(diffraction, data, mask, probe, (x, y), optics, opts)


def _assemble(path, data: h5py.Dataset, mask, probe, positions_m, optics: dict, opts: DatasetConfig) -> dict:
    """The shared second half of both readers: crop (only the N x N window of each
    pattern is read from the file), mask, geometry, positions. positions_m: (x, y) in
    metres; optics: wavelength and distance (m), and the detector pixel or the object
    pixel (m, (y, x)), whichever the file gives."""
    x_m, y_m = positions_m
    *lead, h, w = data.shape
    m = int(np.prod(lead))  # (M, H, W), or (rows, columns, H, W) of a raster scan
    if len(x_m) != m:
        raise InputError(path, f"{m} diffraction patterns but {len(x_m)} scan positions")
    if probe is not None:
        probe = np.asarray(probe)
        if probe.ndim < 2 or probe.dtype.kind not in "uifc" or probe.shape[-1] != probe.shape[-2]:
            raise InputError(path, f"probe must be a square complex array (modes, N, N), got "
                             f"{probe.dtype} {probe.shape}")
        probe = probe.reshape(-1, *probe.shape[-2:])[0]  # the first (dominant) mode
    n = opts.pattern_size or (probe.shape[0] if probe is not None else None)
    r, c = opts.beam_center if opts.beam_center is not None else (h // 2, w // 2)
    r, c = int(round(r)), int(round(c))
    if n is None:  # no probe: the largest multiple of 16 that fits around the beam centre
        n = 2 * min(r, h - r, c, w - c) // 16 * 16
    if n <= 0 or r - n // 2 < 0 or c - n // 2 < 0 or r + n // 2 > h or c + n // 2 > w:
        raise InputError(path, f"a {n}x{n} crop around the beam centre (row {r}, column {c}) does not fit "
                         f"the {h}x{w} detector; set beam_center or pattern_size")
    need = m * n * n * 8 * 3  # float64 counts, amplitudes and their float32 copy, roughly
    avail = available_memory()
    if avail is not None and need > avail:
        raise InputError(path, f"{m} patterns of {n}x{n} need about {human_bytes(need)} of memory, more than "
                         f"the {human_bytes(avail)} available")
    window = (slice(r - n // 2, r + n // 2), slice(c - n // 2, c + n // 2))
    patterns = _read(path, data, "diffraction data", (Ellipsis, *window)).reshape(m, n, n).astype(np.float64)
    if mask is not None:
        if mask.shape != (h, w):
            raise InputError(path, f"bad-pixel mask is {mask.shape[0]}x{mask.shape[1]} but patterns are {h}x{w}")
        patterns[:, mask[window] != 0] = 0
    if not np.all(np.isfinite(patterns)):
        raise InputError(path, "diffraction data contain NaN or Inf inside the crop (mark them as bad pixels)")
    patterns = np.clip(patterns, 0, None)  # background subtraction may leave small negatives
    amplitude = np.sqrt(patterns) if opts.measurement != "amplitude" else patterns
    nphotons = float(np.mean(np.sum(amplitude**2, axis=(1, 2))))
    estimated = probe is None
    if estimated:  # zero-phase estimate from the mean pattern (|FFT P|^2 = mean counts)
        spectrum = np.fft.ifftshift(np.sqrt(np.mean(amplitude**2, axis=0)))
        probe = np.fft.fftshift(np.fft.ifft2(spectrum, norm="ortho"))
    if probe.shape != (n, n):
        raise InputError(path, f"probe is {probe.shape[0]}x{probe.shape[1]} but patterns are cropped to "
                         f"{n}x{n}; set pattern_size to the probe's size")
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
    x0, y0 = px.min() - n / 2 - MARGIN, py.min() - n / 2 - MARGIN
    return {
        "diffraction": amplitude.astype(np.float32),
        "probeGuess": probe.astype(np.complex64),
        "xcoords": px - x0, "ycoords": py - y0,
        "scan_index": np.arange(m, dtype=np.int64),
        "nphotons": np.float64(nphotons),
        "wavelength_m": np.float64(wavelength), "distance_m": np.float64(distance),
        "detector_pixel_size_m": np.array(det_pixel, np.float64),
        "pixel_size_m": np.array(obj_pixel, np.float64),
        "origin_m": np.array([y0 * obj_pixel[0], x0 * obj_pixel[1]]),
        "import_notes": np.array(json.dumps({
            "source": Path(path).name, "detector": [h, w], "crop": [r - n // 2, c - n // 2, n],
            "bad_pixels": 0 if mask is None else int(np.count_nonzero(mask[window])),
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
    obj = np.where(np.isfinite(obj), obj, 0).astype(np.complex64)
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
