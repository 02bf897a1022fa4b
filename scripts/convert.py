"""convert: read a beamline scan (CXI file, or a ptychodus folder holding diffraction.h5
and product-in.h5) into a raw NPZ of the data contract, geometry included.

    python -m scripts.convert resources/myscan.cxi results/imported/myscan.npz \
        [--format auto] [--flip-x] [--flip-y] [--transpose-positions] \
        [--beam-center ROW COL] [--pattern-size N] [--measurement counts] [--sha256 HEX]

Every flag is a dataset setting of config/config.yaml (config/README.md).

The NPZ then goes through validate and transpose like any raw NPZ. Patterns are cropped
to N x N around the beam centre (default: the detector's centre pixel, N: the probe's
size), bad pixels are zeroed and counts become amplitudes; positions in metres become
object pixels of size wavelength * distance / (N * detector pixel).
"""

import json
from dataclasses import asdict
import sys

from ptycho_lib import cli
from ptycho_lib.file_types import detect_format
from ptycho_lib.formats import files_sha256, ptychodus_files, read_cxi, read_ptychodus
from ptycho_lib.io import InputError, write_npz
from ptycho_lib.provenance import record


def main(argv):
    a, cfg = cli.parse(cli.parser(__doc__, ("source", "CXI file, or ptychodus folder (diffraction.h5 + product-in.h5)"),
                                  ("output", "raw NPZ to write"), program="convert"), argv)
    opts = cfg["dataset"]
    fmt = detect_format(a.source, opts.format)
    if fmt == "npz":
        raise InputError(a.source, "is an NPZ file already: validate reads it directly")
    if fmt == "ptychodus":
        diffraction, product = ptychodus_files(a.source)
        main_file, inputs = diffraction, {"diffraction": diffraction, "product": product}
    else:
        main_file, inputs = a.source, {"raw": a.source}
    raw = read_ptychodus(diffraction, product, opts) if fmt == "ptychodus" else read_cxi(a.source, opts)
    notes = json.loads(str(raw["import_notes"]))
    # the pin covers the main file and the data files it links to (not a ptychodus product)
    pinned = [main_file.resolve().parent / name for name in notes["files"]
              if fmt != "ptychodus" or name != product.name]
    digest = files_sha256(pinned)
    if opts.sha256 and digest != opts.sha256.lower():
        which = " (of the files it reads)" if len(pinned) > 1 else ""
        raise InputError(main_file, f"SHA-256{which} {digest} differs from the expected {opts.sha256} in the config")
    if notes["probe"] != "from file":
        print(f"warning: {main_file}: no probe in the file; using a zero-phase probe estimated from the "
              "mean pattern (expect a poorer reconstruction)", file=sys.stderr)
    write_npz(a.output, raw)
    record(a.output, "convert", inputs, {**asdict(opts), "format": fmt})


if __name__ == "__main__":
    cli.run(main)
