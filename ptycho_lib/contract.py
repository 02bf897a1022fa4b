"""The NPZ data contract (docs/design.md, "Data contract"): validation of raw files and their
conversion to the canonical layout every later stage reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from .config import LAYOUTS, MEASUREMENTS
from .geometry import windows_outside
from .io import InputError
from .neighbours import nearest_neighbours
from .scan import GEOMETRY, lit_fraction, split_rows

COPIES = 4  # float64 copies of the patterns checking and converting make (what reading must budget for)
FLOAT32_SAFE = 1e30  # intensities (and |P|^2) stay below this, and above its inverse for the probe, so that
# sums over a pattern and products in float32 (largest 3.4e38, smallest normal 1.2e-38) neither overflow nor vanish


@dataclass
class Detected:
    key: str  # 'diffraction' or 'diff3d'
    layout: str  # 'stack_first' (M, N, N) or 'stack_last' (N, N, M)
    measurement: str  # 'counts', 'amplitude' or 'intensity'
    m: int
    n: int


def _real_numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "uif"


def inspect(raw: dict, path, layout: str = "auto", measurement: str = "auto") -> Detected:
    """Check the contract and decide how the file is laid out; raise InputError naming
    the problem (and the config option that settles an ambiguity)."""
    if layout not in LAYOUTS:
        raise InputError(path, f"layout must be one of {LAYOUTS}, got {layout!r}")
    if measurement not in MEASUREMENTS:
        raise InputError(path, f"measurement must be one of {MEASUREMENTS}, got {measurement!r}")
    keys = [k for k in ("diffraction", "diff3d") if k in raw]
    if not keys:
        raise InputError(path, "no diffraction data: expected the key 'diffraction' (or legacy 'diff3d')")
    if len(keys) == 2:
        raise InputError(path, "holds both 'diffraction' and 'diff3d'; keep one")
    key = keys[0]
    diff = raw[key]
    if not _real_numeric(diff):
        raise InputError(path, f"'{key}' has dtype {diff.dtype}; expected real numbers (counts or amplitudes)")
    if diff.ndim != 3:
        raise InputError(path, f"'{key}' has shape {diff.shape}; expected a 3-D stack of patterns")

    for k in ("probeGuess", "xcoords", "ycoords"):
        if k not in raw:
            raise InputError(path, f"missing required key '{k}'")
    probe, x, y = raw["probeGuess"], raw["xcoords"], raw["ycoords"]
    for k, a in (("xcoords", x), ("ycoords", y)):
        if a.ndim != 1 or not _real_numeric(a):
            raise InputError(path, f"'{k}' must be a 1-D array of real numbers, got {a.dtype} {a.shape}")
        if not np.all(np.isfinite(a)):
            raise InputError(path, f"'{k}' contains NaN or Inf")
    if len(x) != len(y):
        raise InputError(path, f"xcoords has {len(x)} entries but ycoords has {len(y)}")
    m = len(x)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1] or probe.dtype.kind not in "uifc":
        raise InputError(path, f"'probeGuess' must be a square 2-D numeric array, got {probe.dtype} {probe.shape}")
    n = probe.shape[0]
    layout = _pick_layout(diff.shape, key, m, n, layout, path)
    if m < 2:
        raise InputError(path, f"only {m} pattern; ptychography needs overlapping positions")

    if diff.dtype.kind == "f" and not np.all(np.isfinite(diff)):
        raise InputError(path, f"'{key}' contains NaN or Inf")
    if diff.min() < 0:
        raise InputError(path, f"'{key}' has negative values (min {diff.min():g})")
    if diff.max() <= 0:
        raise InputError(path, f"'{key}' is all zero: no photons were measured")
    if not np.all(np.isfinite(probe)) or not np.any(probe):
        raise InputError(path, "'probeGuess' is not finite or is all zero")
    peak = float(np.max(np.abs(probe.astype(np.complex128)) ** 2))
    if not 1 / FLOAT32_SAFE <= peak <= FLOAT32_SAFE:
        raise InputError(path, f"'probeGuess' intensity |P|^2 peaks at {peak:.3g}, outside the {1 / FLOAT32_SAFE:g} "
                         f"to {FLOAT32_SAFE:g} that float32 arithmetic keeps; rescale the probe")
    if len(np.unique(np.stack([x, y], 1), axis=0)) < 2:
        raise InputError(path, f"all {m} positions are the same point; ptychography needs distinct, overlapping "
                         "positions")
    if "bad_pixels" in raw:
        bad = raw["bad_pixels"]
        if bad.shape != (n, n) or bad.dtype.kind not in "buif" or not np.all(np.isfinite(bad)):
            raise InputError(path, f"'bad_pixels' must be an {n}x{n} mask (nonzero = bad pixel), got {bad.dtype} "
                             f"{bad.shape}")
        if np.all(bad != 0):
            raise InputError(path, "'bad_pixels' marks every pixel bad: nothing was measured")
    if "scan_index" in raw:
        index = raw["scan_index"]
        if index.dtype.kind not in "ui" or index.shape != (m,):
            raise InputError(path, f"'scan_index' must be {m} integers, one per position, got {index.dtype} "
                             f"{index.shape}")
    if "nphotons" in raw:
        photons(raw["nphotons"], path, "'nphotons'")

    if measurement == "auto":
        if diff.dtype.kind in "ui":
            measurement = "counts"
        elif np.all(diff == np.round(diff)) and diff.max() > 1:
            measurement = "counts"  # whole numbers stored as floats
        else:
            measurement = "amplitude"  # the contract's meaning of real-valued patterns
    with np.errstate(over="ignore"):
        largest = float(np.float64(diff.max()) ** (2 if measurement == "amplitude" else 1))
    if largest > FLOAT32_SAFE:
        raise InputError(path, f"'{key}' reaches an intensity of {largest:.3g} photons in one pixel, beyond the "
                         f"{FLOAT32_SAFE:g} that float32 arithmetic keeps; check its scale")

    for k, shape in GEOMETRY.items():
        if k in raw:
            a = raw[k]
            if a.shape != shape or a.dtype.kind not in "uif" or not np.all(np.isfinite(a)):
                raise InputError(path, f"'{k}' must be finite real numbers of shape {shape}, got {a.dtype} {a.shape}")
            if k != "origin_m" and not np.all(a > 0):
                raise InputError(path, f"'{k}' must be positive, got {a}")

    if "objectGuess" in raw:
        obj = raw["objectGuess"]
        if obj.ndim != 2 or obj.dtype.kind not in "uifc" or not np.all(np.isfinite(obj)):
            raise InputError(path, f"'objectGuess' must be a finite 2-D array, got {obj.dtype} {obj.shape}")
        h, w = obj.shape
        bad = windows_outside(y, x, n, obj.shape)
        if bad.any():
            j = int(np.argmax(bad))
            raise InputError(path, f"position {j} (x={x[j]:.2f}, y={y[j]:.2f}) puts its {n}x{n} window "
                             f"outside the {h}x{w} objectGuess ({int(bad.sum())} such positions)")
    return Detected(key=key, layout=layout, measurement=measurement, m=m, n=n)


def photons(value, path, what) -> float:
    """A photon count per pattern (file metadata or config): one finite positive number."""
    value = np.asarray(value)
    if value.ndim != 0 or value.dtype.kind not in "uif" or not np.isfinite(value) or value <= 0:
        raise InputError(path, f"{what} must be one positive, finite number of photons per pattern, got {value!r}")
    return float(value)


def check_training_split(y: np.ndarray, data, path) -> None:
    """Refuse a scan too small for the data settings it will be trained with: each of
    the training rows and the held-out band must fill a group of gridsize^2."""
    train, val = split_rows(y, data.val_fraction)
    need = data.gridsize ** 2
    if len(train) < need or (data.val_fraction > 0 and len(val) < need):
        raise InputError(path, f"{len(y)} patterns are too few to train on: val_fraction {data.val_fraction:g} leaves "
                         f"{len(train)} for training and {len(val)} for validation, and gridsize {data.gridsize} "
                         f"groups {need}")


def _pick_layout(shape, key, m, n, layout, path) -> str:
    """The stack order in which `shape` holds m square n x n patterns; an InputError
    says what does not fit (positions, squareness, probe size) or which option to set."""
    fits = {"stack_first": (shape[0], shape[1:]), "stack_last": (shape[2], shape[:2])}
    if layout != "auto":
        fits = {layout: fits[layout]}
    with_m = {k: pat for k, (count, pat) in fits.items() if count == m}
    if not with_m:
        where = "the first or last axis" if layout == "auto" else f"the {layout} axis"
        raise InputError(path, f"'{key}' shape {shape} does not hold one pattern per position: "
                         f"xcoords/ycoords give {m} positions, {where} of '{key}' does not")
    good = [k for k, pat in with_m.items() if pat == (n, n)]
    if not good:
        h, w = next(iter(with_m.values()))
        if h != w:
            raise InputError(path, f"patterns are {h}x{w}, not square ('{key}' shape {shape})")
        raise InputError(path, f"patterns are {h}x{w} but probeGuess is {n}x{n}; they must match")
    if len(good) == 2:
        raise InputError(path, f"'{key}' shape {shape} fits both stack orders (M = N = {n}); "
                         "set layout: stack_first or stack_last for this dataset in config/config.yaml")
    if n % 16:
        raise InputError(path, f"patterns are {n}x{n}; the network needs N to be a multiple of 16")
    return good[0]


def position_warnings(x: np.ndarray, y: np.ndarray, n: int) -> list[str]:
    """Unusual but usable positions: duplicates and sparse overlap (a warning each)."""
    pts = np.stack([y, x], 1)
    uniq = np.unique(np.round(pts, 3), axis=0)
    out = []
    if len(uniq) < len(pts):
        out.append(f"{len(pts) - len(uniq)} of {len(pts)} positions duplicate another; "
                   "they add no new overlap")
    if len(uniq) >= 2:
        nearest = nearest_neighbours(uniq, 1)[:, 0]
        d = float(np.median(np.linalg.norm(uniq - uniq[nearest], axis=1)))
        if d > n / 2:
            out.append(f"sparse overlap: neighbouring positions are {d:.1f} px apart (median) for "
                       f"{n}-px windows, under 50% overlap; expect a poor reconstruction")
    return out


def _stack_first(raw, det: Detected) -> np.ndarray:
    d = raw[det.key]
    return d if det.layout == "stack_first" else np.moveaxis(d, -1, 0)


def dose_stats(raw, det: Detected) -> dict:
    """Total counts per pattern (in photon units when the data are counts)."""
    d = _stack_first(raw, det).astype(np.float64)
    totals = d.reshape(det.m, -1).sum(1) if det.measurement != "amplitude" else (d**2).reshape(det.m, -1).sum(1)
    return {"mean": float(totals.mean()), "min": float(totals.min()), "max": float(totals.max())}


def validate(raw: dict, path, layout="auto", measurement="auto", data=None) -> dict:
    """The validation report: what the file is and how it will be converted; with
    `data` (a DataConfig), a scan too small to train with it is refused."""
    det = inspect(raw, path, layout, measurement)
    x, y = raw["xcoords"], raw["ycoords"]
    if data is not None:
        check_training_split(y, data, path)
    pts = np.stack([x, y], 1)
    uniq = len(np.unique(np.round(pts, 6), axis=0))
    report = {
        "detected": asdict(det),
        "keys": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in sorted(raw.items())},
        "total_counts_per_pattern": dose_stats(raw, det),
        "positions": {"x_range": [float(x.min()), float(x.max())], "y_range": [float(y.min()), float(y.max())],
                      "duplicates": int(len(pts) - uniq)},
        "has_object": "objectGuess" in raw,
        "warnings": position_warnings(x, y, det.n),
    }
    return report


def canonicalise(raw: dict, path, layout="auto", measurement="auto", nphotons=None) -> dict:
    """Convert a raw file to the canonical contract: (M, N, N) float32 amplitudes, complex64
    probe/object, float64 coordinates, nphotons; the conversions made are recorded."""
    det = inspect(raw, path, layout, measurement)
    conversions = []
    d = _stack_first(raw, det)
    if det.layout == "stack_last":
        conversions.append("stack (N, N, M) -> (M, N, N)")
    if det.key == "diff3d":
        conversions.append("key diff3d -> diffraction")
    d = d.astype(np.float64)
    bad = raw["bad_pixels"] != 0 if "bad_pixels" in raw else None
    if bad is not None:  # what a bad pixel holds is no measurement: zero, and left out downstream
        d[:, bad] = 0
    peak = float(d.max())
    # photons per pattern: those measured, over the share of the light that reaches measured pixels
    share = lit_fraction(raw["probeGuess"], bad)
    if det.measurement in ("counts", "intensity"):
        measured = float(d.reshape(det.m, -1).sum(1).mean()) / share
        d = np.sqrt(d)
        conversions.append(f"{det.measurement} -> amplitude (sqrt)")
    else:
        measured = float((d**2).reshape(det.m, -1).sum(1).mean()) / share
    # photon scale: measured counts; for amplitudes and intensities, config or file
    # metadata if given, the patterns then scaled to it (the Poisson model needs counts
    # in photons); normalised amplitudes (all below 1) without it are refused
    if nphotons is None and "nphotons" in raw:
        nphotons, source = float(raw["nphotons"]), "file"
    else:
        source = "config"
    if det.measurement == "counts":
        nph, source = measured, "measured counts"
    elif nphotons is not None:
        nph = photons(nphotons, path, f"nphotons ({source})")
        if abs(measured / nph - 1) > 1e-3:
            d = d * np.sqrt(nph / measured)
            conversions.append(f"amplitudes scaled by {np.sqrt(nph / measured):.6g} to nphotons {nph:g}")
    elif peak < 1:
        raise InputError(path, f"'{det.key}' is normalised (every value below 1, largest {peak:.3g}), not photon "
                         "counts or their square root; set nphotons (the mean photons per pattern) for this "
                         "dataset in config/config.yaml to scale it")
    else:
        nph, source = measured, "sum of squared amplitudes (assumed sqrt(counts))"
    with np.errstate(over="ignore"):
        largest = float(np.float64(d.max()) ** 2)
    if largest > FLOAT32_SAFE:
        raise InputError(path, f"scaled to nphotons {nph:g}, '{det.key}' would reach an intensity of "
                         f"{largest:.3g} photons in one pixel, beyond float32's safe {FLOAT32_SAFE:g}")
    out = {
        "diffraction": d.astype(np.float32),
        "probeGuess": raw["probeGuess"].astype(np.complex64),
        "xcoords": raw["xcoords"].astype(np.float64),
        "ycoords": raw["ycoords"].astype(np.float64),
        "scan_index": raw["scan_index"].astype(np.int64) if "scan_index" in raw else np.arange(det.m, dtype=np.int64),
        "nphotons": np.float64(nph),
    }
    if "objectGuess" in raw:
        out["objectGuess"] = raw["objectGuess"].astype(np.complex64)
    if bad is not None:
        out["bad_pixels"] = bad
        conversions.append(f"{int(bad.sum())} bad pixels zeroed and left out of every fit")
    out.update({k: raw[k].astype(np.float64) for k in GEOMETRY if k in raw})
    for k in ("probeGuess", "objectGuess", "xcoords", "ycoords"):
        if k in raw and raw[k].dtype != out[k].dtype:
            conversions.append(f"{k} {raw[k].dtype} -> {out[k].dtype}")
    out["conversions"] = np.array(json.dumps({"detected": asdict(det), "conversions": conversions,
                                              "nphotons_source": source,
                                              "warnings": position_warnings(out["xcoords"], out["ycoords"], det.n)}))
    return out
