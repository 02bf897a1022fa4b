"""convert: read a beamline scan (CXI file, or a ptychodus folder holding diffraction.h5
and product-in.h5) into a raw NPZ of the data contract, geometry included.

    python scripts/convert.py resources/myscan.cxi results/imported/myscan.npz \
        [--format auto] [--flip-x] [--flip-y] [--transpose-positions] \
        [--beam-center ROW COL] [--pattern-size N] [--measurement counts] [--sha256 HEX]

The NPZ then goes through validate and transpose like any raw NPZ. Patterns are cropped
to N x N around the beam centre (default: the detector's centre pixel, N: the probe's
size), bad pixels are zeroed and counts become amplitudes; positions in metres become
object pixels of size wavelength * distance / (N * detector pixel).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _cli; this checkout's ptycho_lib
from _cli import run  # noqa: E402

from ptycho_lib.formats import FORMATS, ReadOptions, ptychodus_files, read_cxi, read_ptychodus  # noqa: E402
from ptycho_lib.io import InputError, sha256_file, write_npz  # noqa: E402
from ptycho_lib.provenance import record  # noqa: E402


def detect_format(source: Path) -> str:
    """ptychodus for a folder, npz for .npz, cxi for any HDF5 file (.cxi, .h5, .nxs)."""
    if source.is_dir():
        return "ptychodus"
    return "npz" if source.suffix.lower() == ".npz" else "cxi"


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, help="CXI file, or ptychodus folder (diffraction.h5 + product-in.h5)")
    p.add_argument("output", type=Path, help="raw NPZ to write")
    p.add_argument("--format", choices=("auto", *FORMATS), default="auto",
                   help="auto: ptychodus for a folder, cxi for a file (default: auto)")
    p.add_argument("--flip-x", action="store_true", help="negate the x positions")
    p.add_argument("--flip-y", action="store_true", help="negate the y positions")
    p.add_argument("--transpose-positions", action="store_true", help="swap x and y positions (before flips)")
    p.add_argument("--beam-center", type=float, nargs=2, metavar=("ROW", "COL"), default=None,
                   help="detector pixel of the beam centre (default: the detector's centre)")
    p.add_argument("--pattern-size", type=int, default=None, help="crop size N (default: the probe's size)")
    p.add_argument("--measurement", choices=("auto", "counts", "intensity", "amplitude"), default="auto",
                   help="what the patterns hold; auto = counts (default: auto)")
    p.add_argument("--sha256", default="", help="expected SHA-256 of the CXI file or diffraction.h5")
    a = p.parse_args(argv)
    fmt = detect_format(a.source) if a.format == "auto" else a.format
    if fmt == "npz":
        raise InputError(a.source, "is an NPZ file already: validate reads it directly")
    if fmt == "ptychodus":
        diffraction, product = ptychodus_files(a.source)
        main_file, inputs = diffraction, {"diffraction": diffraction, "product": product}
    else:
        main_file, inputs = a.source, {"raw": a.source}
    if a.sha256 and main_file.is_file() and sha256_file(main_file) != a.sha256.lower():
        raise InputError(main_file, f"SHA-256 {sha256_file(main_file)} differs from the expected {a.sha256} in the config")
    opts = ReadOptions(flip_x=a.flip_x, flip_y=a.flip_y, transpose=a.transpose_positions,
                       beam_center=a.beam_center, pattern_size=a.pattern_size,
                       measurement="amplitude" if a.measurement == "amplitude" else "counts")
    raw = read_ptychodus(diffraction, product, opts) if fmt == "ptychodus" else read_cxi(a.source, opts)
    notes = json.loads(str(raw["import_notes"]))
    if notes["probe"] != "from file":
        print(f"warning: {main_file}: no probe in the file; using a zero-phase probe estimated from the "
              "mean pattern (expect a poorer reconstruction)", file=sys.stderr)
    write_npz(a.output, raw)
    record(a.output, "convert", inputs, {"format": fmt, **vars(opts), "sha256": a.sha256})


if __name__ == "__main__":
    run(main)
