"""transpose: convert a validated raw scan to the canonical NPZ layout.

    python -m scripts.transpose resources/fly001.npz results/canonical/fly001.npz \
        [--layout auto] [--measurement auto] [--nphotons N]

Writes (M, N, N) float32 amplitudes (stored uncompressed, so that infer can read them
batch by batch from a memory map), the complex64 probe and reference object, float64
positions and `nphotons`, the scan's geometry when it has one, and a `conversions`
entry recording what was converted and where the photon count came from.
"""

import json
import sys

from ptycho_lib import cli
from ptycho_lib.contract import COPIES, canonicalise
from ptycho_lib.io import read_npz, write_npz
from ptycho_lib.provenance import record


def main(argv):
    a, cfg = cli.parse(cli.parser(__doc__, ("raw", "raw NPZ file"), ("canonical", "canonical NPZ to write"),
                                  program="transpose"), argv)
    opts = cfg["dataset"]
    canonical = canonicalise(read_npz(a.raw, copies=COPIES), a.raw, opts.layout, opts.measurement, opts.nphotons)
    for warning in json.loads(str(canonical["conversions"]))["warnings"]:
        print(f"warning: {a.raw}: {warning}", file=sys.stderr)
    # patterns uncompressed: infer memory-maps them and reads them batch by batch
    write_npz(a.canonical, canonical, stored=("diffraction",))
    record(a.canonical, "transpose", {"raw": a.raw},
           {"layout": opts.layout, "measurement": opts.measurement, "nphotons": opts.nphotons})


if __name__ == "__main__":
    cli.run(main)
