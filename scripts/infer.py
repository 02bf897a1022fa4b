"""infer: reconstruct the complex object of a scan with a trained model bundle.

    python scripts/infer.py --model_path results/models/fly001/wts.h5.zip \
        --test_data results/canonical/fly001.npz --output results/recon/fly001.npz [flags]

The output NPZ holds `object` (complex64), `amplitude` and `phase` (float32), the
stitching `weight`, the positions used and a JSON `provenance` string.
"""

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _cli; this checkout's ptycho_lib
from _cli import run  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ptycho_lib import __version__, config  # noqa: E402
from ptycho_lib.bundle import load_network  # noqa: E402
from ptycho_lib.data import load_scan  # noqa: E402
from ptycho_lib.io import sha256_file, write_npz  # noqa: E402
from ptycho_lib.provenance import record  # noqa: E402
from ptycho_lib.reconstruct import reconstruct  # noqa: E402
from ptycho_lib.training import pick_accelerator  # noqa: E402

SECTIONS = ("infer", "execution")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", type=Path, required=True, help="model bundle wts.h5.zip")
    p.add_argument("--test_data", type=Path, required=True, help="canonical NPZ to reconstruct")
    p.add_argument("--output", type=Path, required=True, help="reconstruction NPZ to write")
    p.add_argument("--gridsize", type=int, default=None,
                   help="refuse a model trained with another gridsize (default: not checked)")
    config.add_arguments(p, SECTIONS)
    a = p.parse_args(argv)
    cfg = config.build(a, SECTIONS)
    torch.set_num_threads(cfg["execution"].threads)
    device = pick_accelerator(cfg["execution"].accelerator)
    scan = load_scan(a.test_data)
    net, manifest = load_network(a.model_path, n=scan.n, gridsize=a.gridsize)
    rec = reconstruct(net, manifest, scan, cfg["infer"], device, a.test_data)
    provenance = {
        "model_bundle": a.model_path.name, "model_bundle_sha256": sha256_file(a.model_path),
        "data": a.test_data.name, "data_sha256": sha256_file(a.test_data),
        "infer": vars(cfg["infer"]), "library_version": __version__,
    }
    write_npz(a.output, {
        "object": rec["object"], "amplitude": np.abs(rec["object"]).astype(np.float32),
        "phase": np.angle(rec["object"]).astype(np.float32), "weight": rec["weight"],
        "xcoords": scan.x + rec["origin"][1], "ycoords": scan.y + rec["origin"][0],
        "provenance": np.array(json.dumps(provenance, sort_keys=True)),
    })
    record(a.output, "infer", {"model_bundle": a.model_path, "data": a.test_data},
           {**{k: asdict(v) for k, v in cfg.items()}, "gridsize": a.gridsize},
           extra={"bundle_weights_sha256": manifest["members"]["wts.h5"],
                  "training_data_sha256": manifest.get("training_data_sha256")})


if __name__ == "__main__":
    run(main)
