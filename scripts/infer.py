"""infer: reconstruct the complex object of a scan with a trained model bundle.

    python -m scripts.infer --model-path results/models/fly001/wts.h5.zip
        --test-data results/canonical/fly001.npz --output-dir results/recon [flags]

writes results/recon/fly001.npz: the file is named after --test-data, so the command
above is what the workflow's recon rule runs (--output FILE names it instead). The NPZ
holds `object` (complex64), `amplitude` and `phase` (float32), the stitching `weight`,
the positions used on that canvas, the canvas `origin` (row, column of the reference
object's pixel 0), a JSON `provenance` string and the scan's geometry keys
(`pixel_size_m`, `wavelength_m`, ... when the scan has them); the layout is
ptycho_lib.reconstruction's. A progress bar over the batches goes to stderr unless
--quiet. Every flag: docs/cli.md.
"""

import argparse
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from ptycho_lib import __version__, cli, config
from ptycho_lib.bundle import load_network
from ptycho_lib.io import sha256_file
from ptycho_lib.iterative import spread_subset
from ptycho_lib.provenance import record
from ptycho_lib.reconstruct import reconstruct
from ptycho_lib.runtime import pick_accelerator, torch_threads
from ptycho_lib.scan import load_scan

def parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, program="infer")
    config.add_flag(p, "--model-path", "--model_path", type=Path, required=True, help="model bundle wts.h5.zip")
    config.add_flag(p, "--test-data", "--test_data", type=Path, required=True, help="canonical NPZ to reconstruct")
    where = p.add_mutually_exclusive_group(required=True)
    config.add_flag(where, "--output-dir", "--output_dir", type=Path,
                    help="directory for the reconstruction, named after --test-data")
    where.add_argument("--output", type=Path, help="reconstruction NPZ to write (instead of --output-dir)")
    p.add_argument("--gridsize", type=int, default=None,
                   help="refuse a model trained with another gridsize (default: not checked)")
    return p


def main(argv):
    a, cfg = cli.parse(parser(), argv)
    output = a.output or a.output_dir / f"{a.test_data.stem}.npz"
    scan = load_scan(a.test_data, mmap=True)  # patterns read batch by batch from the file
    net, manifest = load_network(a.model_path, n=scan.n, gridsize=a.gridsize)
    torch.set_num_threads(torch_threads(cfg["execution"]))
    device = pick_accelerator(cfg["execution"].accelerator)
    progress = None if cfg["execution"].quiet else (lambda batches: tqdm(batches, desc="infer", unit="batch"))
    held_out = cfg["solver"].holdout_fraction  # the refinement's: it judges its large-scale fit by them
    unseen = spread_subset(len(scan.x), held_out) if held_out > 0 else None
    rec = reconstruct(net, scan, cfg["infer"], device, cfg["execution"].num_workers, progress, unseen=unseen)
    rec.provenance = {
        "model_bundle": a.model_path.name, "model_bundle_sha256": sha256_file(a.model_path),
        "data": a.test_data.name, "data_sha256": sha256_file(a.test_data),
        "infer": vars(cfg["infer"]), "library_version": __version__,
    }
    rec.save(output)
    record(output, "infer", {"model_bundle": a.model_path, "data": a.test_data},
           {**{k: asdict(v) for k, v in cfg.items()}, "gridsize": a.gridsize},
           extra={"bundle_weights_sha256": manifest["members"]["wts.h5"],
                  "training_data_sha256": manifest.get("training_data_sha256")})


if __name__ == "__main__":
    cli.run(main)
