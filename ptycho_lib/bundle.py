"""The model bundle `wts.h5.zip` (docs/design.md, "Model bundle").

Two members: `manifest.json` (format, backend, architecture, scales, provenance and
the SHA-256 of every other member) and `wts.h5` (one HDF5 dataset per tensor).
Reading never unpickles or evaluates anything, never extracts to disk, and refuses a
bundle whose members disagree with the manifest.
"""

from __future__ import annotations

import io
import json
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
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        _zip_member(zf, "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        _zip_member(zf, "wts.h5", wts)
    return manifest["members"]["wts.h5"]


def export_checkpoint(checkpoint, path) -> str:
    """Bundle a training checkpoint (read with weights_only=True: no unpickling of
    arbitrary objects); returns the SHA-256 of the weights."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    hp = dict(ckpt["hyper_parameters"])
    manifest = {
        "architecture": PtychoNet(hp["n"], hp["width"], hp["norm"], hp["input_transform"],
                                  hp.get("estimate_iterations", 0), hp.get("skips", False)).architecture(),
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


def read_bundle(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Manifest and weights of a bundle, after checking every member against it."""
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
            try:
                data[info.filename] = zf.read(info)
            except (zipfile.BadZipFile, EOFError, OSError) as e:
                raise InputError(path, f"member {info.filename} is damaged ({e})") from None
    try:
        manifest = json.loads(data["manifest.json"])
    except ValueError as e:
        raise InputError(path, f"manifest.json is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise InputError(path, "manifest.json is not a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(path, f"unknown bundle format_version {manifest.get('format_version')!r} "
                         f"(this library reads {FORMAT_VERSION})")
    if manifest.get("backend") != "pytorch":
        raise InputError(path, f"backend {manifest.get('backend')!r} is not 'pytorch'")
    expected = manifest.get("members", {}).get("wts.h5")
    if expected != sha256_bytes(data["wts.h5"]):
        raise InputError(path, "wts.h5 does not match the SHA-256 recorded in manifest.json")
    return manifest, _read_weights(path, data["wts.h5"])


def _read_weights(path, blob: bytes) -> dict[str, np.ndarray]:
    """Numeric datasets at the top level of the HDF5 member, read from memory; links
    and external storage (which would read other files) are refused."""
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
            item = f[name]
            if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "biufc" or item.external:
                raise InputError(path, f"wts.h5 entry {name!r} is not a plain numeric tensor; refusing")
            weights[name] = item[()]
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
    With n or gridsize, a bundle made for other data or settings is refused."""
    manifest, weights = read_bundle(path)
    check_compatible(path, manifest, n, gridsize)
    arch = manifest.get("architecture")
    if not isinstance(arch, dict) or arch.get("name") != "PtychoNet":
        raise InputError(path, f"unknown architecture {arch!r}")
    # bundles written before the estimate input and the skips existed hold the plain network
    arch = {"estimate_iterations": 0, "skips": False, **arch}
    del arch["name"]
    try:
        net = PtychoNet(**arch)
        prefix = "net."
        state = {k[len(prefix):]: torch.from_numpy(np.asarray(v)) for k, v in weights.items() if k.startswith(prefix)}
        net.load_state_dict(state, strict=True)
    except (TypeError, RuntimeError, ValueError) as e:
        raise InputError(path, f"weights do not fit architecture {arch} ({str(e).splitlines()[0]})") from None
    return net.eval(), manifest
