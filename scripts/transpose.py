"""transpose: convert a validated raw scan to the canonical NPZ layout.

    python scripts/transpose.py resources/fly001.npz results/canonical/fly001.npz \
        [--layout auto] [--measurement auto] [--nphotons N]
"""

import argparse
import json
import sys
from pathlib import Path

from ptycho_lib.cli import run
from ptycho_lib import config
from ptycho_lib.contract import canonicalise
from ptycho_lib.io import read_npz, write_npz
from ptycho_lib.provenance import record


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw", type=Path, help="raw NPZ file")
    p.add_argument("canonical", type=Path, help="canonical NPZ to write")
    config.add_arguments(p, "transpose")
    a = p.parse_args(argv)
    opts = config.build(a, "transpose")["dataset"]
    canonical = canonicalise(read_npz(a.raw), a.raw, opts.layout, opts.measurement, opts.nphotons)
    for warning in json.loads(str(canonical["conversions"]))["warnings"]:
        print(f"warning: {a.raw}: {warning}", file=sys.stderr)
    # patterns uncompressed: infer memory-maps them and reads them batch by batch
    write_npz(a.canonical, canonical, stored=("diffraction",))
    record(a.canonical, "transpose", {"raw": a.raw},
           {"layout": opts.layout, "measurement": opts.measurement, "nphotons": opts.nphotons})


if __name__ == "__main__":
    run(main)
