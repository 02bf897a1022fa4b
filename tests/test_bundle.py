"""The model bundle: a round trip rebuilds the same network; tampering is refused."""

import json
import zipfile

import pytest
import torch

from ptycho_lib.bundle import load_network, write_bundle
from ptycho_lib.io import InputError
from ptycho_lib.model import PINN


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    probe = torch.ones(32, 32, dtype=torch.complex64)
    module = PINN(probe, 1e5, 0.5, n=32, width=8, gridsize=2)
    path = tmp_path / "wts.h5.zip"
    write_bundle(path, module.state_dict(), {"architecture": {"name": "PtychoNet", "n": 32, "width": 8}})
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
    _rewrite(path, {**_members(path), "../evil.py": b"print('owned')"})
    with pytest.raises(InputError, match="expected exactly"):
        load_network(path)


def test_truncated_archive_is_refused(bundle):
    path, _ = bundle
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not a readable model bundle|damaged"):
        load_network(path)
