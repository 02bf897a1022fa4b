"""evaluate: score a reconstruction against the measured patterns and, when the scan
holds one, its reference object.

    python -m scripts.evaluate results/recon/fly001.npz results/canonical/fly001.npz \
        results/metrics/recon/fly001.json

With a reference (`objectGuess`), compares over the scanned region (bounding box of the positions) after removing the
global phase offset, a linear phase ramp, a sub-pixel shift and the amplitude scale:
amplitude and phase SSIM and PSNR, and the FRC curve with its 1/2-bit resolution.
Beside them, and for a scan without a reference alone, figures that need none: `nll_per_photon`, the Poisson NLL of all
the scan's patterns under the reconstruction's object and probe (the solvers fitted
these patterns, so it flatters them at low dose), and for refined reconstructions
`heldout_nll_per_photon`, that of the patterns held out while the refinement was chosen.
"""

import argparse
from pathlib import Path

import numpy as np

from ptycho_lib.cli import run
from ptycho_lib.geometry import scanned_region
from ptycho_lib.io import InputError, read_npz, write_json
from ptycho_lib.iterative import pattern_nll
from ptycho_lib.metrics import compare
from ptycho_lib.physics import scale_probe
from ptycho_lib.provenance import record
from ptycho_lib.reconstruction import Reconstruction
from ptycho_lib.scan import scan_from


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recon", type=Path, help="reconstruction NPZ from infer")
    p.add_argument("reference", type=Path, help="the scan's canonical NPZ (its objectGuess, when present, is the "
                   "reference)")
    p.add_argument("metrics", type=Path, help="JSON file to write")
    a = p.parse_args(argv)
    rec, ref = Reconstruction.load(a.recon), read_npz(a.reference)
    scores = {}
    if "objectGuess" in ref:
        obj = rec.in_frame(ref["objectGuess"].shape)  # a canvas grown by --pad-eval: the reference's frame
        if ref["objectGuess"].shape != obj.shape:
            raise InputError(a.recon, f"object {rec.object.shape} differs from the reference "
                             f"{ref['objectGuess'].shape}")
        region = scanned_region(ref["xcoords"], ref["ycoords"])
        scores = compare(obj, ref["objectGuess"], region)
        scores["region"] = {"rows": [region[0].start, region[0].stop], "cols": [region[1].start, region[1].stop]}
    scan = scan_from(ref)
    probe = rec.extra.get("probe")  # a refined probe, else the scan's
    if probe is None:
        probe = scale_probe(scan.probe.astype(np.complex128), scan.nphotons)
    scores["nll_per_photon"] = pattern_nll(rec.object, probe, scan.measured, rec.y, rec.x)
    if "heldout_nll" in rec.extra:  # the refinement's own figure: patterns it was not fitted to
        scores["heldout_nll_per_photon"] = float(rec.extra["heldout_nll"][:, 2].min())
    write_json(a.metrics, scores)
    record(a.metrics, "evaluate", {"recon": a.recon, "reference": a.reference})
    print(" ".join(f"{k}={v:.4f}" for k, v in scores.items() if isinstance(v, float)))


if __name__ == "__main__":
    run(main)
