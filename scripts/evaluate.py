"""evaluate: score a reconstruction against the scan's reference object.

    python scripts/evaluate.py results/recon/fly001.npz results/canonical/fly001.npz \
        results/metrics/fly001.json

Compares over the scanned region (bounding box of the positions) after removing the
global phase offset, a linear phase ramp, a sub-pixel shift and the amplitude scale:
amplitude and phase SSIM and PSNR, and the FRC curve with its 1/2-bit resolution.
"""

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _cli; this checkout's ptycho_lib
from _cli import run  # noqa: E402

from ptycho_lib.io import InputError, read_npz, write_json  # noqa: E402
from ptycho_lib.metrics import compare  # noqa: E402
from ptycho_lib.provenance import record  # noqa: E402
from ptycho_lib.stitch import scanned_region  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recon", type=Path, help="reconstruction NPZ from infer")
    p.add_argument("reference", type=Path, help="canonical NPZ holding objectGuess")
    p.add_argument("metrics", type=Path, help="JSON file to write")
    a = p.parse_args(argv)
    rec, ref = read_npz(a.recon), read_npz(a.reference)
    if "objectGuess" not in ref:
        raise InputError(a.reference, "has no objectGuess to compare with")
    obj = rec["object"]
    if "origin" in rec:  # a canvas grown by --pad-eval: cut the reference's frame back out
        (oy, ox), (h, w) = rec["origin"].astype(int), ref["objectGuess"].shape
        obj = obj[oy:oy + h, ox:ox + w]
    if ref["objectGuess"].shape != obj.shape:
        raise InputError(a.recon, f"object {rec['object'].shape} differs from the reference {ref['objectGuess'].shape}")
    region = scanned_region(ref["xcoords"], ref["ycoords"])
    scores = compare(obj, ref["objectGuess"], region)
    scores["region"] = {"rows": [region[0].start, region[0].stop], "cols": [region[1].start, region[1].stop]}
    write_json(a.metrics, scores)
    record(a.metrics, "evaluate", {"recon": a.recon, "reference": a.reference})
    print(" ".join(f"{k}={v:.4f}" for k, v in scores.items() if isinstance(v, float)))



if __name__ == "__main__":
    run(main)
