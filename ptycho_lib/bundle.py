"""The model bundle `wts.h5.zip` (docs/design.md, "Model bundle").

Two members: `manifest.json` (format, backend, architecture, scales, provenance and
the SHA-256 of every other member) and `wts.h5` (one HDF5 dataset per tensor).
Reading never unpickles or evaluates anything, never extracts to disk, and refuses a
bundle whose members disagree with the manifest.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch

from . import __version__
from .io import InputError, atomic_path, sha256_bytes
from .model import PtychoNet

FORMAT_VERSION = 1
MEMBERS = ("manifest.json", "wts.h5")
MAX_MEMBER_BYTES = 1 << 30  # a bundle of this network is a few MB; refuse zip bombs


def _weights_h5(state: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w", track_order=True) as f:
        for name in sorted(state):
            f.create_dataset(name, data=state[name].detach().cpu().numpy(), track_times=False)
    return buf.getvalue()


def _zip_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def write_bundle(path, state: dict[str, torch.Tensor], manifest: dict) -> str:
    """Write the bundle atomically; returns the SHA-256 of the weights member."""
    wts = _weights_h5(state)
    manifest = {**manifest, "format_version": FORMAT_VERSION, "backend": "pytorch",
                "library_version": __version__, "members": {"wts.h5": sha256_bytes(wts)}}
    manifest["manifest_sha256"] = sha256_bytes(_manifest_text(manifest).encode())
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        _zip_member(zf, "manifest.json", _manifest_text(manifest).encode())
        _zip_member(zf, "wts.h5", wts)
    return manifest["members"]["wts.h5"]


def export_checkpoint(checkpoint, path) -> str:
    """Bundle a training checkpoint (read with weights_only=True: no unpickling of
    arbitrary objects); returns the SHA-256 of the weights."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    hp = dict(ckpt["hyper_parameters"])
    manifest = {
        "architecture": PtychoNet(hp["n"], hp["width"], hp["norm"], hp["input_transform"],
                                  hp.get("estimate_iterations", 0), hp.get("skips", False),
                                  hp.get("stem", 2), hp.get("n2_convs", 2)).architecture(),
        "gridsize": hp["gridsize"],
        "loss": hp["loss"],
        "input_scale": hp["input_scale"],
        "nphotons": hp["nphotons"],
        "training_data_sha256": hp["data_sha256"],
        "epochs": ckpt["epoch"] + 1,
        "checkpoint": {"file": Path(checkpoint).name, "epoch": ckpt["epoch"], "global_step": ckpt["global_step"],
                       **ckpt.get("selection", {})},
    }
    return write_bundle(path, ckpt["state_dict"], manifest)


def _manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _number(kind, lo, hi):
    """A check that a value is a `kind` (int or float, not bool) within [lo, hi]."""
    def check(v):
        ok = isinstance(v, (int, float) if kind is float else int) and not isinstance(v, bool)
        return ok and math.isfinite(v) and lo <= v <= hi
    return check, f"{'an integer' if kind is int else 'a number'} from {lo:g} to {hi:g}"


def _one_of(*values):
    return (lambda v: v in values), "one of " + ", ".join(map(repr, values))


# what the manifest's values may be; every value used to build or run the network is here
ARCHITECTURE = {
    "name": _one_of("PtychoNet"),
    "n": ((lambda v: _number(int, 16, 1024)[0](v) and v % 16 == 0), "a multiple of 16 from 16 to 1024"),
    "width": _number(int, 4, 256),
    "norm": _one_of("batch", "none"),
    "input_transform": _one_of("sqrt", "none"),
    "estimate_iterations": _number(int, 0, 100),
    "skips": _one_of(True, False),
    "stem": _one_of(2, 4),
    "n2_convs": _one_of(1, 2),
}
OPTIONAL = {
    "gridsize": _number(int, 1, 4),
    "input_scale": _number(float, 1e-30, 1e30),
    "nphotons": _number(float, 1e-30, 1e30),
    "loss": _one_of("poisson", "mae"),
    "epochs": _number(int, 0, 1e9),
}
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def check_manifest(path, manifest) -> dict:
    """The manifest, once its own checksum (when it has one: bundles before 0.3 do
    not) and the type and range of every value the network is built from hold."""
    if not isinstance(manifest, dict):
        raise InputError(path, "manifest.json is not a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(path, f"unknown bundle format_version {manifest.get('format_version')!r} "
                         f"(this library reads {FORMAT_VERSION})")
    own = manifest.get("manifest_sha256")
    if own is not None and own != sha256_bytes(_manifest_text({k: v for k, v in manifest.items()
                                                                if k != "manifest_sha256"}).encode()):
        raise InputError(path, "manifest.json was edited: it does not match the SHA-256 it records; refusing")
    if manifest.get("backend") != "pytorch":
        raise InputError(path, f"backend {manifest.get('backend')!r} is not 'pytorch'")
    members = manifest.get("members")
    if not isinstance(members, dict) or not isinstance(members.get("wts.h5"), str) or \
            not HEX64.match(members["wts.h5"]):
        raise InputError(path, "manifest.json has no SHA-256 of wts.h5 under 'members'")
    arch = manifest.get("architecture")
    if not isinstance(arch, dict):
        raise InputError(path, f"manifest.json: architecture must be a mapping, got {arch!r}")
    # bundles written before the estimate input, the skips, the stem and n2_convs options existed
    arch = {"estimate_iterations": 0, "skips": False, "stem": 2, "n2_convs": 2, **arch}
    for where, rules, values in (("architecture.", ARCHITECTURE, arch), ("", OPTIONAL, manifest)):
        for key, (ok, wanted) in rules.items():
            if (key in values or where) and not ok(values.get(key)):
                raise InputError(path, f"manifest.json: {where}{key} must be {wanted}, got {values.get(key)!r}")
    unknown = set(arch) - set(ARCHITECTURE)
    if unknown:
        raise InputError(path, f"manifest.json: unknown architecture keys {sorted(unknown)}")
    return {**manifest, "architecture": arch}


def read_bundle(path) -> tuple[dict, bytes]:
    """The checked manifest and the weights member of a bundle (its SHA-256 checked)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(path, f"not a readable model bundle ({e})") from None
    with zf:
        names = sorted(zf.namelist())
        unsafe = [n for n in names if n.startswith(("/", "\\")) or ".." in n.replace("\\", "/").split("/")
                  or (len(n) > 1 and n[1] == ":")]
        if unsafe:
            raise InputError(path, f"member path {unsafe[0]!r} is absolute or climbs out with '..'; "
                             "refusing the bundle")
        if names != sorted(MEMBERS):
            raise InputError(path, f"bundle members are {names}; expected exactly {sorted(MEMBERS)}")
        data = {}
        for info in zf.infolist():
            if info.file_size > MAX_MEMBER_BYTES:
                raise InputError(path, f"member {info.filename} claims {info.file_size} bytes; refusing")
            if info.flag_bits & 0x1:
                raise InputError(path, f"member {info.filename} is encrypted; refusing")
            try:
                data[info.filename] = zf.read(info)
            except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as e:
                raise InputError(path, f"member {info.filename} is damaged ({e})") from None
    try:
        manifest = json.loads(data["manifest.json"])
    except ValueError as e:
        raise InputError(path, f"manifest.json is not valid JSON ({e})") from None
    manifest = check_manifest(path, manifest)
    if manifest["members"]["wts.h5"] != sha256_bytes(data["wts.h5"]):
        raise InputError(path, "wts.h5 does not match the SHA-256 recorded in manifest.json")
    return manifest, data["wts.h5"]


def _read_weights(path, blob: bytes, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors named in `expected` (a state dict on the meta device: names, shapes,
    dtypes) from the HDF5 member, read from memory once each entry's header matches
    and its data are stored in full (a never-written dataset would be read as a huge
    array of fill values); links and external storage, which would read other files,
    are refused."""
    try:
        f = h5py.File(io.BytesIO(blob), "r")
    except OSError as e:
        raise InputError(path, f"wts.h5 is not an HDF5 file ({e}); refusing") from None
    weights = {}
    with f:
        for name in f:
            link = f.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise InputError(path, f"wts.h5 entry {name!r} is a {type(link).__name__}; refusing")
        for key, meta in expected.items():
            name = "net." + key
            item = f.get(name)
            if not isinstance(item, h5py.Dataset) or item.external or item.is_virtual:
                raise InputError(path, f"wts.h5 entry {name!r} is missing or not a plain tensor; refusing")
            dtype = np.dtype(str(meta.dtype).removeprefix("torch."))
            if tuple(item.shape) != tuple(meta.shape) or item.dtype != dtype:
                raise InputError(path, f"wts.h5 entry {name!r} is {item.dtype} {item.shape}; the architecture "
                                 f"needs {dtype} {tuple(meta.shape)}")
            if item.nbytes and item.id.get_storage_size() < item.nbytes:
                raise InputError(path, f"wts.h5 entry {name!r} holds {item.id.get_storage_size()} of its "
                                 f"{item.nbytes} bytes; refusing")
            weights[key] = torch.from_numpy(np.asarray(item[()]))
    return weights


def check_compatible(path, manifest: dict, n: int | None = None, gridsize: int | None = None) -> None:
    """Refuse a bundle made for another pattern size or gridsize than the caller's."""
    trained_n = manifest.get("architecture", {}).get("n")
    if n is not None and trained_n != n:
        raise InputError(path, f"the model was trained on {trained_n}x{trained_n} patterns but the data "
                         f"have {n}x{n}")
    if gridsize is not None and manifest.get("gridsize") != gridsize:
        raise InputError(path, f"the model was trained with gridsize {manifest.get('gridsize')} but "
                         f"gridsize {gridsize} is configured")


def load_network(path, n: int | None = None, gridsize: int | None = None) -> tuple[PtychoNet, dict]:
    """Rebuild the network from a bundle; returns (network in eval mode, manifest).
    With n or gridsize, a bundle made for other data or settings is refused. The
    weights are checked against the architecture (on the meta device: nothing
    allocated) before any is read, and must be finite."""
    manifest, blob = read_bundle(path)
    check_compatible(path, manifest, n, gridsize)
    arch = {k: v for k, v in manifest["architecture"].items() if k != "name"}
    with torch.device("meta"):
        expected = PtychoNet(**arch).state_dict()
    state = _read_weights(path, blob, expected)
    bad = [k for k, v in state.items() if (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all()]
    if bad:
        raise InputError(path, f"weights {bad[0]!r} hold NaN or Inf ({len(bad)} tensors); refusing the bundle")
    net = PtychoNet(**arch)
    net.load_state_dict(state, strict=True)
    return net.eval(), manifest
