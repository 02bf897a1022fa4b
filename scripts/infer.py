"""infer: reconstruct the complex object of a scan with a trained model bundle.

    python scripts/infer.py --model_path results/models/fly001/wts.h5.zip
        --test_data results/canonical/fly001.npz --output_dir results/recon [flags]

writes results/recon/fly001.npz: the file is named after --test_data, so the command
above is what the workflow's infer rule runs (--output FILE names it instead). The NPZ
holds `object` (complex64), `amplitude` and `phase` (float32), the stitching `weight`,
the positions used on that canvas, the canvas `origin` (row, column of the reference
object's pixel 0), a JSON `provenance` string and the scan's geometry keys
(`pixel_size_m`, `wavelength_m`, ... when the scan has them). A progress bar over the
batches goes to stderr unless --quiet. Every flag: docs/cli.md.
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
from tqdm import tqdm  # noqa: E402

from ptycho_lib import __version__, config  # noqa: E402
from ptycho_lib.bundle import load_network  # noqa: E402
from ptycho_lib.contract import GEOMETRY  # noqa: E402
from ptycho_lib.data import load_scan  # noqa: E402
from ptycho_lib.io import read_npz, sha256_file, write_npz  # noqa: E402
from ptycho_lib.provenance import record  # noqa: E402
from ptycho_lib.reconstruct import reconstruct  # noqa: E402
from ptycho_lib.runtime import pick_accelerator, torch_threads  # noqa: E402

SECTIONS = ("infer", "execution")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", type=Path, required=True, help="model bundle wts.h5.zip")
    p.add_argument("--test_data", type=Path, required=True, help="canonical NPZ to reconstruct")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--output_dir", type=Path, help="directory for the reconstruction, named after --test_data")
    where.add_argument("--output", type=Path, help="reconstruction NPZ to write (instead of --output_dir)")
    p.add_argument("--gridsize", type=int, default=None,
                   help="refuse a model trained with another gridsize (default: not checked)")
    config.add_arguments(p, SECTIONS, "infer")
    return p


def main(argv):
    a = parser().parse_args(argv)
    cfg = config.build(a, SECTIONS, "infer")
    output = a.output or a.output_dir / f"{a.test_data.stem}.npz"
    torch.set_num_threads(torch_threads(cfg["execution"]))
    device = pick_accelerator(cfg["execution"].accelerator)
    scan = load_scan(a.test_data, mmap=True)  # patterns read batch by batch from the file
    net, manifest = load_network(a.model_path, n=scan.n, gridsize=a.gridsize)
    progress = None if cfg["execution"].quiet else (lambda batches: tqdm(batches, desc="infer", unit="batch"))
    rec = reconstruct(net, scan, cfg["infer"], device, cfg["execution"].num_workers, progress)
    # the scan's geometry (pixel size etc., when known) goes with the reconstruction
    geometry = {k: v for k, v in read_npz(a.test_data, mmap_keys=("diffraction",)).items() if k in GEOMETRY}
    provenance = {
        "model_bundle": a.model_path.name, "model_bundle_sha256": sha256_file(a.model_path),
        "data": a.test_data.name, "data_sha256": sha256_file(a.test_data),
        "infer": vars(cfg["infer"]), "library_version": __version__,
    }
    write_npz(output, {
        "object": rec["object"], "amplitude": np.abs(rec["object"]).astype(np.float32),
        "phase": np.angle(rec["object"]).astype(np.float32), "weight": rec["weight"],
        "xcoords": rec["x"] + rec["origin"][1], "ycoords": rec["y"] + rec["origin"][0],
        "origin": rec["origin"],
        "provenance": np.array(json.dumps(provenance, sort_keys=True)), **geometry,
    })
    record(output, "infer", {"model_bundle": a.model_path, "data": a.test_data},
           {**{k: asdict(v) for k, v in cfg.items()}, "gridsize": a.gridsize},
           extra={"bundle_weights_sha256": manifest["members"]["wts.h5"],
                  "training_data_sha256": manifest.get("training_data_sha256")})


if __name__ == "__main__":
    run(main)
