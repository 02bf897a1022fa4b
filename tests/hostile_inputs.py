"""The hostile-input corpus: files that try to read outside their scan, declare arrays far
larger than the memory, make a model hang or slip wrong numbers through with exit 0.
Made on the fly from the tiny simulated scan (nothing binary is committed). Each case
writes its files into a folder of its own (the scan under scan/, anything it points to
under outside/) and says which program must refuse it, naming which file, and why.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from beamline_files import padded_counts, write_cxi, write_ptychodus
from ptycho_lib.bundle import write_bundle
from ptycho_lib.config import ModelConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.formats import EV
from ptycho_lib.io import write_npz
from ptycho_lib.model import PINN


@dataclass
class Case:
    script: str  # the program that must refuse it (scripts/NAME)
    args: list  # its command line
    subject: Path  # the file its one-line error must name
    message: str  # what the error must say
    outputs: list = field(default_factory=list)  # must not exist afterwards


CASES: dict = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def write_case(name: str, raw: dict, folder: Path) -> Case:
    (folder / "scan").mkdir(parents=True)
    (folder / "outside").mkdir()
    (folder / "out").mkdir()
    return CASES[name](raw, Path(folder))


# --- the programs -------------------------------------------------------------------

def _convert(source: Path, d: Path, message: str, subject: Path | None = None) -> Case:
    out = d / "out" / "scan.npz"
    return Case("convert", [source, out], subject or source, message, [out])


def _validate(raw: dict, d: Path, message: str, writer=None) -> Case:
    path = d / "scan" / "scan.npz"
    (writer or (lambda p, r: np.savez(p, **r)))(path, raw)
    out = d / "out" / "report.json"
    return Case("validate", [path, out], path, message, [out])


def _cxi(raw, d: Path, edit=None, **override) -> Path:
    """The scan as a CXI file; `edit(f)` then changes it with h5py."""
    path = write_cxi(d / "scan" / "scan.cxi", raw, **override)
    if edit:
        with h5py.File(path, "a") as f:
            edit(f)
    return path


DATA = "entry_1/data_1/data"


def _detector(raw) -> np.ndarray:
    return padded_counts(raw)[0]


def _replace(f: h5py.File, name: str, value) -> None:
    del f[name]
    f[name] = value


# --- 1. reading other files -----------------------------------------------------------

@case
def raw_storage_in_a_system_file(raw, d):
    secret = d / "outside" / "secret.bin"
    counts = _detector(raw)
    secret.write_bytes(counts.tobytes())

    def edit(f):
        del f[DATA]
        f.create_dataset(DATA, counts.shape, counts.dtype, external=[(str(secret), 0, counts.nbytes)])
    return _convert(_cxi(raw, d, edit), d, "keeps its data in raw external files")


@case
def entry_group_linked_to_another_file(raw, d):
    other = write_cxi(d / "outside" / "other.cxi", raw)
    return _convert(_cxi(raw, d, lambda f: _replace(f, "entry_1", h5py.ExternalLink(str(other), "/entry_1"))),
                    d, "outside the folder")


@case
def soft_link_to_an_external_link(raw, d):
    other = write_cxi(d / "outside" / "other.cxi", raw)

    def edit(f):
        f["hop"] = h5py.ExternalLink(str(other), "/" + DATA)
        _replace(f, DATA, h5py.SoftLink("/hop"))
    return _convert(_cxi(raw, d, edit), d, "outside the folder")


@case
def relative_link_climbing_out(raw, d):
    write_cxi(d / "outside" / "other.cxi", raw)
    return _convert(_cxi(raw, d, lambda f: _replace(f, DATA, h5py.ExternalLink("../outside/other.cxi", "/" + DATA))),
                    d, "points to ../outside/other.cxi, outside the folder")


def _virtual(f, source: Path | str, shape, dtype, name="frames"):
    layout = h5py.VirtualLayout(shape, dtype)
    layout[...] = h5py.VirtualSource(str(source), name, shape)
    del f[DATA]
    f.create_virtual_dataset(DATA, layout, fillvalue=0)


@case
def virtual_dataset_over_another_folder(raw, d):
    counts = _detector(raw)
    with h5py.File(d / "outside" / "frames.h5", "w") as f:
        f["frames"] = counts
    return _convert(_cxi(raw, d, lambda f: _virtual(f, d / "outside" / "frames.h5", counts.shape, counts.dtype)),
                    d, "outside the folder")


@case
def virtual_dataset_with_its_source_missing(raw, d):
    counts = _detector(raw)
    return _convert(_cxi(raw, d, lambda f: _virtual(f, "frames.h5", counts.shape, counts.dtype)),
                    d, "points to frames.h5, which does not exist")


@case
def virtual_dataset_source_shorter_than_mapped(raw, d):
    counts = _detector(raw)
    with h5py.File(d / "scan" / "frames.h5", "w") as f:
        f["frames"] = counts[: len(counts) // 2]
    return _convert(_cxi(raw, d, lambda f: _virtual(f, "frames.h5", counts.shape, counts.dtype)),
                    d, "is smaller than its mapping")


@case
def soft_link_loop(raw, d):
    def edit(f):
        f["a"], f["b"] = h5py.SoftLink("/b"), h5py.SoftLink("/a")
        _replace(f, DATA, h5py.SoftLink("/a"))
    return _convert(_cxi(raw, d, edit), d, "links on the way (a soft-link loop?)")


@case
def dangling_soft_link(raw, d):
    return _convert(_cxi(raw, d, lambda f: _replace(f, DATA, h5py.SoftLink("/nowhere"))), d,
                    "leads nowhere (a dangling link)")


@case
def ptychodus_probe_linked_outside(raw, d):
    folder = write_ptychodus(d / "scan", raw)
    with h5py.File(folder / "product-in.h5", "a") as f, h5py.File(d / "outside" / "probe.h5", "w") as g:
        g["probe"] = f["probe"][()]
        g["probe"].attrs.update(f["probe"].attrs)
        _replace(f, "probe", h5py.ExternalLink(str(d / "outside" / "probe.h5"), "/probe"))
    return _convert(folder, d, "outside the folder", subject=folder / "product-in.h5")


# --- 2. huge allocations from small files ---------------------------------------------

def _unwritten(f, name, shape, dtype):
    """A dataset declared `shape` but never written: a few hundred bytes in the file."""
    if name in f:
        del f[name]
    f.create_dataset(name, shape, dtype, chunks=tuple(min(s, 256) for s in shape))


@case
def mask_declaring_40_gigabytes(raw, d):
    return _convert(_cxi(raw, d, lambda f: _unwritten(f, "entry_1/instrument_1/detector_1/mask",
                                                      (200_000, 200_000), np.uint8)),
                    d, "mask has shape (200000, 200000); the patterns need (40, 48)")


@case
def probe_declaring_80_gigabytes(raw, d):
    return _convert(_cxi(raw, d, lambda f: _unwritten(f, "entry_1/instrument_1/source_1/illumination",
                                                      (1, 100_000, 100_000), np.complex64)),
                    d, "no larger than the 40x48 detector")


@case
def translations_declaring_24_gigabytes(raw, d):
    return _convert(_cxi(raw, d, lambda f: _unwritten(f, "entry_1/data_1/translation", (10**9, 3), np.float64)),
                    d, "translations has shape (1000000000, 3); the patterns need (36, 3)")


@case
def patterns_declaring_a_million_frames(raw, d):
    def edit(f):
        _unwritten(f, DATA, (10**6, 40, 48), np.uint16)
        _unwritten(f, "entry_1/data_1/translation", (10**6, 3), np.float64)
    return _convert(_cxi(raw, d, edit), d, "of memory, more than the")


@case
def npz_whose_float64_copies_exceed_memory(raw, d):
    m = 10_000  # 41 MB of uint8 counts in the file; checking and converting make float64 copies
    rng = np.random.default_rng(0)
    big = {"diffraction": rng.integers(0, 4, (m, 64, 64), dtype=np.uint8),
           "probeGuess": np.ones((64, 64), np.complex64),
           "xcoords": rng.random(m) * 500, "ycoords": rng.random(m) * 500}
    return _validate(big, d, "of memory to load, more than the", writer=lambda p, r: np.savez_compressed(p, **r))


def _bundle_case(raw, d: Path, message: str, manifest_edit=None, weights_edit=None, seal=True) -> Case:
    """A canonical scan and a bundle of a fresh network for it, then edited: the manifest
    by `manifest_edit(manifest)`, the weights by `weights_edit(h5 file)`; `seal`
    recomputes the checksums as a careful attacker would."""
    scan = d / "scan" / "scan.npz"
    write_npz(scan, canonicalise(raw, scan), stored=("diffraction",))
    torch.manual_seed(0)
    module = PINN(torch.ones(32, 32, dtype=torch.complex64), 1e5, 0.5, ModelConfig(width=8), gridsize=2)
    bundle = d / "scan" / "wts.h5.zip"
    write_bundle(bundle, module.state_dict(), {"architecture": module.net.architecture(), "gridsize": 2})
    with zipfile.ZipFile(bundle) as zf:
        manifest, weights = json.loads(zf.read("manifest.json")), zf.read("wts.h5")
    if weights_edit:
        buf = io.BytesIO(weights)
        with h5py.File(buf, "a") as f:
            weights_edit(f)
        weights = buf.getvalue()
        manifest["members"]["wts.h5"] = hashlib.sha256(weights).hexdigest()
    if manifest_edit:
        manifest = manifest_edit(manifest)
    if seal and isinstance(manifest, dict):
        manifest.pop("manifest_sha256", None)
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        manifest["manifest_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        zf.writestr("wts.h5", weights)
    out = d / "out" / "recon.npz"
    return Case("infer", ["--model-path", bundle, "--test-data", scan, "--output", out, "--quiet"], bundle, message,
                [out])


def _architecture(**changes):
    def edit(manifest):
        manifest["architecture"].update(changes)
        return manifest
    return edit


@case
def bundle_tensor_declaring_2_gigabytes(raw, d):
    return _bundle_case(raw, d, "is float32 (23000, 23000); the architecture needs float32 (8, 8, 3, 3)",
                        weights_edit=lambda f: _unwritten(f, "net.head.weight", (23000, 23000), np.float32))


@case
def bundle_tensor_never_written(raw, d):
    return _bundle_case(raw, d, "holds 0 of its",
                        weights_edit=lambda f: _unwritten(f, "net.head.weight", (8, 8, 3, 3), np.float32))


@case
def manifest_width_3000(raw, d):
    return _bundle_case(raw, d, "architecture.width must be an integer from 4 to 256, got 3000",
                        manifest_edit=_architecture(width=3000))


# --- 3. a manifest edit that would hang or crash inference ------------------------------

@case
def manifest_edited_by_hand(raw, d):
    return _bundle_case(raw, d, "manifest.json was edited", manifest_edit=_architecture(estimate_iterations=10**9),
                        seal=False)


@case
def manifest_a_billion_estimate_iterations(raw, d):
    return _bundle_case(raw, d, "architecture.estimate_iterations must be an integer from 0 to 100",
                        manifest_edit=_architecture(estimate_iterations=10**9))


@case
def manifest_architecture_a_list(raw, d):
    def edit(manifest):
        manifest["architecture"] = list(manifest["architecture"].items())
        return manifest
    return _bundle_case(raw, d, "architecture must be a mapping", manifest_edit=edit)


@case
def manifest_a_list(raw, d):
    return _bundle_case(raw, d, "manifest.json is not a JSON object", manifest_edit=lambda m: [m])


# --- 4. silent wrong results ----------------------------------------------------------

@case
def bundle_nan_weights(raw, d):
    def edit(f):
        w = f["net.head.weight"][()]
        w[0, 0, 0, 0] = np.nan
        _replace(f, "net.head.weight", w)
    return _bundle_case(raw, d, "hold NaN or Inf", weights_edit=edit)


def _with(raw, **changes):
    return {**{k: v for k, v in raw.items() if k not in changes}, **{k: v for k, v in changes.items() if v is not None}}


@case
def all_zero_patterns(raw, d):
    return _validate(_with(raw, diff3d=np.zeros_like(raw["diff3d"])), d, "is all zero: no photons were measured")


@case
def nphotons_nan(raw, d):
    return _validate(_with(raw, nphotons=np.float64("nan")), d, "'nphotons' must be one positive, finite number")


@case
def nphotons_negative(raw, d):
    return _validate(_with(raw, nphotons=np.float64(-1e5)), d, "'nphotons' must be one positive, finite number")


@case
def nphotons_infinite(raw, d):
    return _validate(_with(raw, nphotons=np.float64("inf")), d, "'nphotons' must be one positive, finite number")


@case
def nphotons_a_string(raw, d):
    return _validate(_with(raw, nphotons=np.array("many")), d, "'nphotons' must be one positive, finite number")


@case
def amplitudes_times_1e300(raw, d):
    return _validate(_with(raw, diff3d=np.sqrt(raw["diff3d"].astype(np.float64)) * 1e300 + 0.5), d,
                     "beyond the 1e+30 that float32 arithmetic keeps")


@case
def probe_times_1e30(raw, d):
    return _validate(_with(raw, probeGuess=raw["probeGuess"] * 1e30), d, "outside the 1e-30 to 1e+30")


@case
def probe_times_1e_minus_30(raw, d):
    return _validate(_with(raw, probeGuess=raw["probeGuess"] * 1e-30), d, "outside the 1e-30 to 1e+30")


@case
def scan_index_shorter_than_positions(raw, d):
    return _validate(_with(raw, scan_index=np.arange(3)), d, "'scan_index' must be 36 integers, one per position")


@case
def signed_counts_with_an_offset(raw, d):
    signed = np.minimum(_detector(raw), 30000).astype(np.int16) - 5  # a dark offset subtracted
    return _convert(_cxi(raw, d, lambda f: _replace(f, DATA, signed)), d,
                    "signed integers with negative values (min -5)")


@case
def energy_of_0_08_ev(raw, d):
    return _convert(_cxi(raw, d, **{"entry_1/instrument_1/source_1/energy": 0.08 * EV}), d,
                    "source energy is 1.28174e-20 J, outside the plausible")


@case
def distance_in_millimetres(raw, d):
    return _convert(_cxi(raw, d, **{"entry_1/instrument_1/detector_1/distance": 2000.0}), d,
                    "detector distance is 2000 m, outside the plausible 0.001 to 100 m")


@case
def pixel_size_in_micrometres(raw, d):
    return _convert(_cxi(raw, d, **{"entry_1/instrument_1/detector_1/x_pixel_size": 75.0}), d,
                    "detector x_pixel_size is 75 m, outside the plausible")


@case
def ptychodus_energy_in_kev(raw, d):
    folder = write_ptychodus(d / "scan", raw)
    with h5py.File(folder / "product-in.h5", "a") as f:
        f.attrs["probe_energy_eV"] = 8.0
    return _convert(folder, d, "probe_energy_eV is 8 eV, outside the plausible 10 to 100000 eV",
                    subject=folder / "product-in.h5")


@case
def reconstruction_holding_nan(raw, d):
    obj = raw["objectGuess"].astype(np.complex64)
    obj[3, 4] = np.nan
    rec = d / "scan" / "recon.npz"
    write_npz(rec, {"object": obj, "weight": np.ones(obj.shape, np.float32), "xcoords": raw["xcoords"],
                    "ycoords": raw["ycoords"], "origin": np.zeros(2)})
    out = d / "out" / "recon.png"
    return Case("render", [rec, out], rec, "holds NaN or Inf in 1 of", [out])


# --- 7. what later stages refused, said by the first; messages without a file name ------

@case
def all_positions_identical(raw, d):
    return _validate(_with(raw, xcoords=np.full(36, 30.0), ycoords=np.full(36, 30.0), objectGuess=None), d,
                     "all 36 positions are the same point")


def _first(raw, m):
    return _with(raw, diff3d=raw["diff3d"][:, :, :m], xcoords=raw["xcoords"][:m], ycoords=raw["ycoords"][:m],
                 scan_index=raw["scan_index"][:m])


@case
def three_patterns(raw, d):
    return _validate(_first(raw, 3), d, "3 patterns are too few to train on")


@case
def sixteen_patterns_leave_no_validation_group(raw, d):
    return _validate(_first(raw, 16), d, "leaves 14 for training and 2 for validation, and gridsize 2 groups 4")


@case
def encrypted_member(raw, d):
    def write(path, arrays):
        np.savez(path, **arrays)
        data = bytearray(path.read_bytes())
        for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
            start = 0
            while (start := data.find(signature, start)) >= 0:
                flags = struct.unpack_from("<H", data, start + flag_at)[0]
                struct.pack_into("<H", data, start + flag_at, flags | 0x1)
                start += 4
        path.write_bytes(bytes(data))
    return _validate(raw, d, "is encrypted; refusing", writer=write)
