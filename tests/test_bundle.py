"""The model bundle: a round trip rebuilds the same network; tampering is refused."""

import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import torch

from bad_inputs import Pickled
from conftest import REPO
from ptycho_lib.bundle import load_network, write_bundle
from ptycho_lib.config import ModelConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.io import InputError, write_npz
from ptycho_lib.model import PINN


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    probe = torch.ones(32, 32, dtype=torch.complex64)
    module = PINN(probe, 1e5, 0.5, ModelConfig(width=8), gridsize=2)
    path = tmp_path / "wts.h5.zip"
    write_bundle(path, module.state_dict(), {"architecture": module.net.architecture(),
                                             "gridsize": 2})
    return path, module


def test_round_trip_gives_the_same_predictions(bundle):
    path, module = bundle
    net, manifest = load_network(path)
    x = torch.rand(3, 32, 32)
    module.net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.patches(x), module.net.patches(x), rtol=0, atol=0)
    assert manifest["backend"] == "pytorch" and manifest["format_version"] == 1
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["manifest.json", "wts.h5"]


@pytest.mark.parametrize("stem, n2_convs, recorded", [(4, 1, True), (2, 1, True), (2, 2, False)])
def test_each_network_round_trips_and_a_bundle_that_names_no_stem_holds_the_earlier_one(tmp_path, stem, n2_convs,
                                                                                         recorded):
    """Bundles written before `stem` and `n2_convs` existed name neither: their network
    started at N/2 and convolved twice there."""
    torch.manual_seed(0)
    module = PINN(torch.ones(32, 32, dtype=torch.complex64), 1e5, 0.5,
                  ModelConfig(width=8, stem=stem, n2_convs=n2_convs), gridsize=2)
    architecture = module.net.architecture()
    if not recorded:
        del architecture["stem"], architecture["n2_convs"]
    write_bundle(tmp_path / "wts.h5.zip", module.state_dict(), {"architecture": architecture, "gridsize": 2})
    net, _ = load_network(tmp_path / "wts.h5.zip")
    x = torch.rand(3, 32, 32)
    module.net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.patches(x), module.net.patches(x), rtol=0, atol=0)
    assert (net.stem, net.n2_convs) == (stem, n2_convs)


def _rewrite(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_tampered_weights_are_refused(bundle):
    path, _ = bundle
    m = _members(path)
    w = bytearray(m["wts.h5"])
    w[-100] ^= 0xFF
    _rewrite(path, {**m, "wts.h5": bytes(w)})
    with pytest.raises(InputError, match="does not match the SHA-256"):
        load_network(path)


def test_unknown_format_version_is_refused(bundle):
    path, _ = bundle
    m = _members(path)
    manifest = json.loads(m["manifest.json"])
    manifest["format_version"] = 99
    _rewrite(path, {**m, "manifest.json": json.dumps(manifest)})
    with pytest.raises(InputError, match="unknown bundle format_version 99"):
        load_network(path)


def test_unexpected_member_is_refused(bundle):
    path, _ = bundle
    _rewrite(path, {**_members(path), "notes.txt": b"hello"})
    with pytest.raises(InputError, match="expected exactly"):
        load_network(path)


@pytest.mark.parametrize("name", ["../wts.h5", "models/../../evil.py", "/tmp/wts.h5", "C:/wts.h5"])
def test_member_paths_that_leave_the_archive_are_refused(bundle, tmp_path, name):
    path, _ = bundle
    m = _members(path)
    _rewrite(path, {"manifest.json": m["manifest.json"], name: m["wts.h5"]})
    with pytest.raises(InputError, match=f"member path '{re.escape(name)}' is absolute or climbs out"):
        load_network(path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["wts.h5.zip"]  # nothing extracted


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.98])
def test_truncated_archive_is_refused(bundle, keep):
    path, _ = bundle
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="not a readable model bundle|damaged"):
        load_network(path)


def _sealed(manifest: dict) -> str:
    """The manifest with its own SHA-256 recomputed, as a careful attacker would."""
    manifest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = lambda m: json.dumps(m, indent=2, sort_keys=True) + "\n"  # noqa: E731
    return text({**manifest, "manifest_sha256": hashlib.sha256(text(manifest).encode()).hexdigest()})


def _with_weights(path, blob):
    """Replace wts.h5 and record its true hash, as a careful attacker would."""
    m = _members(path)
    manifest = json.loads(m["manifest.json"])
    manifest["members"]["wts.h5"] = hashlib.sha256(blob).hexdigest()
    _rewrite(path, {"manifest.json": _sealed(manifest), "wts.h5": blob})


def test_a_pickle_in_place_of_the_weights_is_never_unpickled(bundle, tmp_path):
    path, module = bundle
    marker = tmp_path / "EXECUTED"
    buf = io.BytesIO()
    torch.save({"state_dict": module.state_dict(), "payload": Pickled(marker)}, buf)
    _with_weights(path, buf.getvalue())
    with pytest.raises(InputError, match="wts.h5 is not an HDF5 file"):
        load_network(path)
    assert not marker.exists()


def test_an_hdf5_link_to_another_file_is_refused(bundle, tmp_path):
    path, _ = bundle
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["x"] = [1.0]
    blob = io.BytesIO()
    with h5py.File(blob, "w") as f:
        f["net.stolen"] = h5py.ExternalLink(str(secret), "x")
    _with_weights(path, blob.getvalue())
    with pytest.raises(InputError, match="'net.stolen' is a ExternalLink; refusing"):
        load_network(path)


def test_a_bundle_for_other_data_or_settings_is_refused(bundle):
    path, _ = bundle
    load_network(path, n=32, gridsize=2)
    with pytest.raises(InputError, match="trained on 32x32 patterns but the data have 64x64"):
        load_network(path, n=64)
    with pytest.raises(InputError, match="trained with gridsize 2 but gridsize 1 is configured"):
        load_network(path, gridsize=1)


def test_infer_refuses_a_bundle_for_another_pattern_size(bundle, tiny_raw, tmp_path):
    path, _ = bundle
    raw = {**tiny_raw, "diff3d": np.pad(tiny_raw["diff3d"], ((16, 16), (16, 16), (0, 0))),
           "probeGuess": np.pad(tiny_raw["probeGuess"], 16)}
    raw.pop("objectGuess")
    data = tmp_path / "scan64.npz"
    write_npz(data, canonicalise(raw, "scan64"))
    out = tmp_path / "recon.npz"
    proc = subprocess.run([sys.executable, str(REPO / "scripts/infer.py"), "--model-path", str(path),
                           "--test-data", str(data), "--output", str(out), "--accelerator", "cpu"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and not out.exists()
    assert proc.stderr.strip().splitlines() == [
        f"error: {path}: the model was trained on 32x32 patterns but the data have 64x64"]
