"""Streaming inference and vectorised stitching: a scan reconstructed from a
memory-mapped file, batch by batch, with its patches spilled to disk, is the object
that the straightforward in-memory computation gives; the stitcher equals a loop over
patches; memory-mapped reading refuses what in-memory reading refuses."""

import zipfile

import numpy as np
import pytest
import torch

from bad_inputs import CASES, WARN, write_case
from conftest import TINY
from ptycho_lib import reconstruct as recon_module
from ptycho_lib.centroids import with_slow_modulus, with_slow_phase
from ptycho_lib.config import InferConfig
from ptycho_lib.contract import canonicalise
from ptycho_lib.data import input_scale
from ptycho_lib.io import InputError, read_npz, write_npz
from ptycho_lib.model import PtychoNet
from ptycho_lib.physics import scale_probe
from ptycho_lib.reconstruct import fold_batchnorm, inference_settings, processing_order, reconstruct
from ptycho_lib.scan import load_scan
from ptycho_lib.simulate import simulate
from helpers import phase_offsets
from ptycho_lib.geometry import canvas_geometry
from ptycho_lib.stitch import Stitcher, overlap_pairs


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    """The tiny scan as transpose writes it (patterns stored uncompressed)."""
    path = tmp_path_factory.mktemp("stream") / "tiny.npz"
    write_npz(path, canonicalise(simulate(TINY), path), stored=("diffraction",))
    return path


class ScrambledPhase(PtychoNet):
    """Patches with a different global phase each (radians apart from pattern to
    pattern, as a network's can be): the phase alignment has real work to do."""

    def forward(self, x):
        amp, phase = super().forward(x)
        return amp, phase + 50.0 * x.mean(dim=(-2, -1))[:, None, None]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    net = ScrambledPhase(n=32, width=8).eval()
    torch.nn.init.normal_(net.head.weight, std=0.05)  # patches that vary with the pattern
    return net


def in_memory_reference(net, scan, cfg):
    """What reconstruct() computes, the direct way: every patch at once, phases from
    all of them, one stitch, the slow modulus and phase from every pattern in memory."""
    shape, (oy, ox) = canvas_geometry(scan.x, scan.y, scan.n, scan.obj.shape)
    y, x = scan.y + oy, scan.x + ox
    with torch.inference_mode():
        patches = net.patches(torch.from_numpy(np.array(scan.amplitude) * np.float32(input_scale(scan.amplitude))))
    patches = patches.numpy()
    stitcher = Stitcher(shape, scan.probe, cfg.stitch)
    patches = patches * np.exp(1j * phase_offsets(patches, y, x, stitcher.weight)).astype(np.complex64)[:, None, None]
    stitcher.add(patches, y, x)
    obj, weight = stitcher.result()
    probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
    obj = with_slow_modulus(obj, probe, scan.amplitude, scan.bad_pixels, y, x, cfg.slow_modulus)
    return with_slow_phase(obj, probe, scan.amplitude, scan.bad_pixels, y, x, cfg.centroid_phase), weight


@pytest.mark.parametrize("stitch", ["fourier", "bilinear"])
def test_streamed_reconstruction_equals_the_in_memory_one(canonical, net, stitch):
    scan = load_scan(canonical, mmap=True)
    assert not scan.amplitude.flags.owndata and scan.amplitude.base is not None  # left in the file
    cfg = InferConfig(batch_size=5, stitch=stitch)
    # patch_memory=0: the patches go through a temporary file between the passes
    got = reconstruct(net, scan, cfg, patch_memory=0)
    obj, weight = in_memory_reference(net, load_scan(canonical), cfg)
    lit = weight > 1e-3 * weight.max()
    np.testing.assert_allclose(got.weight, weight, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.object[lit], obj[lit], rtol=0, atol=2e-5 * np.abs(obj).max())


def test_file_order_does_not_change_the_object(canonical, net):
    """A file listing positions in random order gives the same object (processed in
    bands of rows, so the ring of spectra stays small)."""
    scan = load_scan(canonical)
    perm = np.random.default_rng(1).permutation(len(scan.x))
    shuffled = load_scan(canonical)
    shuffled.amplitude, shuffled.x, shuffled.y = scan.amplitude[perm], scan.x[perm], scan.y[perm]
    a = reconstruct(net, scan, InferConfig(batch_size=7))
    b = reconstruct(net, shuffled, InferConfig(batch_size=7))
    np.testing.assert_allclose(b.object, a.object, atol=2e-5 * np.abs(a.object).max())


def test_neighbours_stay_close_in_processing_order():
    """A raster listed in random order is processed row band by row band: every
    neighbour pair within about two rows of each other, not across the scan."""
    yy, xx = np.mgrid[0:30, 0:30] * 8.0
    pos = np.stack([yy.ravel(), xx.ravel()], 1) + np.random.default_rng(0).normal(0, 0.3, (900, 2))
    pos = pos[np.random.default_rng(1).permutation(900)]
    pairs = overlap_pairs(pos)
    order = processing_order(pos, pairs)
    rank = np.argsort(order)
    assert np.abs(rank[pairs[:, 0]] - rank[pairs[:, 1]]).max() <= 3 * 30


def test_settings_chooser_picks_fast_settings_per_device():
    cuda = inference_settings("cuda", bf16_supported=True)
    assert cuda.autocast == torch.bfloat16 and cuda.channels_last and cuda.batch_size >= 2048
    assert inference_settings("cuda:1", bf16_supported=False).autocast is None
    assert inference_settings("cuda", 64, bf16_supported=True).batch_size == 64  # a set size bounds memory
    cpu = inference_settings("cpu")
    assert cpu.autocast is None and cpu.channels_last and cpu.batch_size == recon_module.CPU_BATCH
    assert inference_settings("cpu", 5).batch_size == 5


def test_folded_network_computes_the_same_patches():
    torch.manual_seed(1)
    net = PtychoNet(n=32, width=8)
    for m in net.modules():  # batch-norm statistics and affine parameters away from identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3), m.running_var.uniform_(0.3, 3), m.weight.data.uniform_(0.5, 2)
            m.bias.data.normal_(0, 0.3)
    torch.nn.init.normal_(net.head.weight, std=0.05)
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(6, 32, 32)
    with torch.inference_mode():
        np.testing.assert_allclose(folded.patches(x).numpy(), net.patches(x).numpy(), rtol=1e-4, atol=1e-5)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the original is untouched


def _loop_stitch(shape, probe, patches, y, x, method):
    """Reference stitcher: one patch at a time, shifted and added pixel block by block."""
    n = probe.shape[0]
    w = np.abs(probe) ** 2
    w = w / w.max()
    num, den = np.zeros(shape, complex), np.zeros(shape)
    q = np.fft.fftfreq(n)
    for p, py, px in zip(patches, y, x):
        ty, tx = py - n / 2, px - n / 2
        iy, ix = int(np.floor(ty)), int(np.floor(tx))
        fy, fx = ty - iy, tx - ix
        if method == "fourier":
            ramp = np.exp(-2j * np.pi * (fy * q[:, None] + fx * q[None, :]))
            parts = [(iy, ix, np.fft.ifft2(np.fft.fft2(p * w) * ramp), np.fft.ifft2(np.fft.fft2(w) * ramp).real)]
        else:
            parts = [(iy + dy, ix + dx, p * w * c, w * c) for dy, dx, c in
                     ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx))]
        for oy, ox, v, wt in parts:
            for r in range(n):
                for col in range(n):
                    if 0 <= oy + r < shape[0] and 0 <= ox + col < shape[1]:
                        num[oy + r, ox + col] += v[r, col]
                        den[oy + r, ox + col] += wt[r, col]
    lit = den > 1e-3 * den.max()
    return np.where(lit, num / np.where(lit, den, 1), 0), den


@pytest.mark.parametrize("method", ["fourier", "bilinear"])
def test_vectorised_stitcher_equals_a_loop_over_patches(method):
    rng = np.random.default_rng(2)
    n, shape = 16, (40, 44)
    probe = np.exp(-((np.mgrid[:n, :n] - n / 2) ** 2).sum(0) / 30) * np.exp(1j * rng.normal(0, 0.3, (n, n)))
    m = 12
    y, x = rng.uniform(-4, 46, m), rng.uniform(-4, 50, m)  # some windows stick out of the canvas
    patches = (rng.normal(1, 0.2, (m, n, n)) * np.exp(1j * rng.normal(0, 1, (m, n, n)))).astype(np.complex64)
    s = Stitcher(shape, probe, method)
    s.add(patches[:5], y[:5], x[:5])  # two batches, as reconstruct() adds them
    s.add(patches[5:], y[5:], x[5:])
    obj, weight = s.result()
    ref_obj, ref_den = _loop_stitch(shape, probe, patches, y, x, method)
    np.testing.assert_allclose(weight, ref_den, atol=1e-5)
    # the weighted sums (what is accumulated; the object divides them by the weights,
    # which amplifies rounding where a window's edge barely reaches)
    num, ref_num = obj * weight, ref_obj * ref_den
    np.testing.assert_allclose(num, ref_num, atol=1e-5 * np.abs(ref_num).max())


def _outcome(fn):
    try:
        out = fn()
    except InputError as e:
        return "error", e.problem
    return "read", out


@pytest.mark.parametrize("case", sorted([*CASES, *WARN]))
def test_memory_mapped_reading_refuses_what_reading_refuses(tmp_path, tiny_raw, case):
    path = write_case(case, tiny_raw, tmp_path)
    plain = _outcome(lambda: read_npz(path))
    mapped = _outcome(lambda: read_npz(path, mmap_keys=("diff3d", "diffraction", "xcoords", "probeGuess")))
    assert plain[0] == mapped[0], (plain, mapped)
    if plain[0] == "error":
        assert plain[1] == mapped[1]
    else:
        assert plain[1].keys() == mapped[1].keys()
        for k in plain[1]:
            a, b = plain[1][k], mapped[1][k]
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def _stored_file(tmp_path, tiny_raw):
    path = tmp_path / "stored.npz"
    write_npz(path, {"diffraction": tiny_raw["diff3d"].astype(np.float32), "xcoords": tiny_raw["xcoords"],
                     "a": np.arange(3)}, stored=("diffraction",))  # 'a' comes first in the file
    return path


@pytest.mark.parametrize("damage", ["crc", "local header", "data offset past the end"])
def test_damaged_stored_member_is_refused_by_both_readers(tmp_path, tiny_raw, damage):
    path = _stored_file(tmp_path, tiny_raw)
    data = bytearray(path.read_bytes())
    at = zipfile.ZipFile(path).getinfo("diffraction.npy").header_offset
    if damage == "crc":
        data[at + 3000] ^= 0x01
    elif damage == "local header":
        data[at:at + 4] = b"PK\x00\x00"
    else:  # the local extra-field length sends the data beyond the file
        data[at + 28:at + 30] = (0xFFFF).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    plain = _outcome(lambda: read_npz(path))
    mapped = _outcome(lambda: read_npz(path, mmap_keys=("diffraction",)))
    assert plain[0] == "error" and plain == mapped


def test_mapped_members_need_no_memory_but_the_others_do(tmp_path, tiny_raw):
    path = _stored_file(tmp_path, tiny_raw)
    small = tiny_raw["xcoords"].nbytes + 400
    with pytest.raises(InputError, match="more than the"):
        read_npz(path, max_bytes=small)
    out = read_npz(path, max_bytes=small, mmap_keys=("diffraction",))
    assert np.array_equal(out["diffraction"], tiny_raw["diff3d"].astype(np.float32))
    assert not out["diffraction"].flags.writeable and out["diffraction"].ctypes.data % 64 == 0


def test_stored_members_keep_writing_deterministic(tmp_path, tiny_raw):
    a, b = _stored_file(tmp_path, tiny_raw), tmp_path / "again.npz"
    write_npz(b, {"diffraction": tiny_raw["diff3d"].astype(np.float32), "xcoords": tiny_raw["xcoords"],
                  "a": np.arange(3)}, stored=("diffraction",))
    assert a.read_bytes() == b.read_bytes()
