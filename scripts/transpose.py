"""transpose: convert a validated raw scan to the canonical NPZ layout.

    python scripts/transpose.py resources/fly001.npz results/canonical/fly001.npz \
        [--layout auto] [--measurement auto] [--nphotons N]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _cli; this checkout's ptycho_lib
from _cli import run  # noqa: E402

from ptycho_lib.contract import LAYOUTS, MEASUREMENTS, canonicalise  # noqa: E402
from ptycho_lib.io import read_npz, write_npz  # noqa: E402
from ptycho_lib.provenance import record  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw", type=Path, help="raw NPZ file")
    p.add_argument("canonical", type=Path, help="canonical NPZ to write")
    p.add_argument("--layout", choices=LAYOUTS, default="auto", help="stack order (default: auto)")
    p.add_argument("--measurement", choices=MEASUREMENTS, default="auto",
                   help="what the patterns hold (default: auto)")
    p.add_argument("--nphotons", type=float, default=None,
                   help="mean photons per pattern, for files holding rescaled amplitudes")
    a = p.parse_args(argv)
    canonical = canonicalise(read_npz(a.raw), a.raw, a.layout, a.measurement, a.nphotons)
    for warning in json.loads(str(canonical["conversions"]))["warnings"]:
        print(f"warning: {a.raw}: {warning}", file=sys.stderr)
    # patterns uncompressed: infer memory-maps them and reads them batch by batch
    write_npz(a.canonical, canonical, stored=("diffraction",))
    record(a.canonical, "transpose", {"raw": a.raw},
           {"layout": a.layout, "measurement": a.measurement, "nphotons": a.nphotons})


if __name__ == "__main__":
    run(main)
