"""Inference knobs observed in the reconstruction: batch sizes the network sees, which
patterns were used, how much of each patch is stitched, and the canvas."""

import numpy as np
import pytest
import torch

from knobs import canonical_tiny
from ptycho_lib import config
from ptycho_lib.bundle import load_network, write_bundle
from ptycho_lib.config import ModelConfig
from ptycho_lib.io import read_npz
from ptycho_lib.model import PINN
from ptycho_lib.reconstruct import reconstruct
from ptycho_lib.scan import load_scan


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("infer")
    torch.set_num_threads(1)  # as the programs' --threads 1 would (see tests/knobs.py)
    data = canonical_tiny(tmp / "tiny.npz")
    torch.manual_seed(0)
    module = PINN(torch.ones(32, 32, dtype=torch.complex64), 1e5, 0.5, ModelConfig(width=8), gridsize=1)
    torch.nn.init.normal_(module.net.head.weight, std=0.05)  # patches that vary with the pattern
    bundle = tmp / "wts.h5.zip"
    write_bundle(bundle, module.state_dict(), {"architecture": module.net.architecture()})
    return data, bundle


def run(setup, *flags, scan=None, workers=0, seen=None):
    import infer as infer_script
    data, bundle = setup
    cfg = config.build(infer_script.parser().parse_args(
        ["--model-path", "m", "--test-data", "t", "--output", "o", *flags]), "infer")
    net, _ = load_network(bundle)
    if seen is not None:
        net.register_forward_hook(lambda mod, args, out: seen.append(len(args[0])))
    return reconstruct(net, scan or load_scan(data), cfg["infer"], "cpu", workers)


def test_batch_size_bounds_each_forward_pass_without_changing_the_result(setup):
    small, whole = [], []
    a = run(setup, "--inference-batch-size", "5", seen=small)
    b = run(setup, "--inference-batch-size", "64", seen=whole)
    assert max(small) == 5 and sum(small) == 36 and whole == [36]
    np.testing.assert_allclose(a.object, b.object, atol=1e-5)


def test_n_images_reconstructs_from_the_first_patterns_only(setup):
    full, part = run(setup), run(setup, "--n-images", "12")
    assert len(part.x) == 12 and np.array_equal(part.x, full.x[:12])
    assert 0 < (part.weight > 0.01).sum() < (full.weight > 0.01).sum()


def test_middle_trim_keeps_only_the_patch_centres(setup):
    data, _ = setup
    probe_w = np.abs(load_scan(data).probe) ** 2
    probe_w /= probe_w.max()
    full, trimmed = run(setup), run(setup, "--middle-trim", "8")
    kept = probe_w[8:24, 8:24].sum() / probe_w.sum()
    # every window lies inside the canvas, so the stitched weight is the sum of the windows'
    assert trimmed.weight.sum() / full.weight.sum() == pytest.approx(kept, rel=1e-4)
    assert kept < 0.99


def test_pad_eval_grows_the_canvas_so_edge_windows_are_whole(setup, tmp_path):
    data, _ = setup
    scan = load_scan(data)
    # a reference object cropped by 10 pixels on each side: edge windows stick out of it
    scan.obj = scan.obj[10:-10, 10:-10]
    scan.x, scan.y = scan.x - 10, scan.y - 10
    cut, padded = run(setup, scan=scan), run(setup, "--pad-eval", scan=scan)
    assert cut.object.shape == scan.obj.shape
    h, w = scan.obj.shape
    oy, ox = padded.origin.astype(int)
    assert padded.object.shape[0] > h and padded.object.shape[1] > w and oy > 0 and ox > 0
    whole = run(setup).weight.sum()  # the uncropped frame holds every window
    assert padded.weight.sum() == pytest.approx(whole, rel=1e-4) and cut.weight.sum() < 0.99 * whole
    inside = padded.object[oy:oy + h, ox:ox + w]
    lit = cut.weight > 1e-3 * cut.weight.max()
    np.testing.assert_allclose(inside[lit], cut.object[lit], atol=1e-4)


def test_loader_workers_give_the_same_reconstruction(setup):
    a, b = run(setup), run(setup, workers=1)
    assert np.array_equal(a.object, b.object)


def test_output_dir_names_the_file_after_the_data_as_the_rule_expects(setup, tmp_path):
    import infer as infer_script
    data, bundle = setup
    infer_script.main(["--model-path", str(bundle), "--test-data", str(data), "--output-dir", str(tmp_path / "recon"),
                       "--n-images", "20", "--pad-eval", "--quiet", "--threads", "1"])
    rec = read_npz(tmp_path / "recon" / "tiny.npz")
    assert len(rec["xcoords"]) == 20 and rec["origin"].shape == (2,)
    assert '"pad_eval": true' in str(rec["provenance"])
