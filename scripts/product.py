"""product: a reconstruction as a ptychodus product HDF5 (open it in ptychodus).

    python -m scripts.product results/recon/fly001.npz results/canonical/fly001.npz \
        results/recon/fly001.h5 [--metrics results/train/fly001/metrics.csv] [--name fly001]

Writes the object (1, H, W) and probe (1, N, N) complex64 with their pixel size and the
object's centre, the positions in metres, energy and distance as root attributes, and
the training losses per epoch (`loss_epochs`, `loss_values` = training loss,
`validation_loss_values`). Without a known pixel size (an NPZ scan with no geometry)
the pixel is 1 m, so sizes and positions read in object pixels, and the root
attribute `pixel_size_known` is 0.
"""

import argparse
from pathlib import Path

import numpy as np

from ptycho_lib.cli import run
from ptycho_lib.formats import write_product
from ptycho_lib.io import InputError, read_npz
from ptycho_lib.provenance import record
from ptycho_lib.reconstruction import Reconstruction
from ptycho_lib.render import read_metrics


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recon", type=Path, help="reconstruction NPZ from infer")
    p.add_argument("canonical", type=Path, help="the canonical scan it was made from (probe, scan index)")
    p.add_argument("output", type=Path, help="product HDF5 to write")
    p.add_argument("--metrics", type=Path, default=None, help="metrics.csv of the model's training")
    p.add_argument("--name", default=None, help="product name (default: the output's stem)")
    a = p.parse_args(argv)
    rec, scan = Reconstruction.load(a.recon), read_npz(a.canonical)
    if "probeGuess" not in scan:
        raise InputError(a.canonical, "not a canonical scan (no 'probeGuess')")
    m = len(rec.x)
    index = scan.get("scan_index", np.arange(m))[:m]
    losses = {"loss_epochs": np.zeros(0, np.int64), "loss_values": np.zeros(0)}
    if a.metrics is not None:
        table = read_metrics(a.metrics)
        if table:
            losses = {"loss_epochs": table["epoch"].astype(np.int64), "loss_values": table["train_loss"],
                      "validation_loss_values": table.get("val_loss", np.full(len(table["epoch"]), np.nan))}
    known = rec.pixel_size_m is not None
    comments = ("PtychoPINN reconstruction (physics-informed network, one forward pass per pattern, "
                "patches stitched). loss_values: training Poisson NLL per photon per epoch. "
                + ("Pixel size from the scan's detector geometry."
                   if known else "Pixel size unknown: 1 m stands for one object pixel."))
    write_product(a.output, a.name or a.output.stem, rec, scan["probeGuess"], index, float(scan.get("nphotons", 0.0)),
                  losses, comments)
    inputs = {"recon": a.recon, "canonical": a.canonical, **({"metrics": a.metrics} if a.metrics else {})}
    record(a.output, "product", inputs, {"name": a.name})


if __name__ == "__main__":
    run(main)
