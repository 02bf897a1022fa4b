"""validate: check a raw scan file against the data contract and write a JSON report.

    python scripts/validate.py resources/fly001.npz results/validated/fly001.json \
        [--layout auto] [--measurement auto] [--sha256 HEX]
"""

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _cli; this checkout's ptycho_lib
from _cli import run  # noqa: E402

from ptycho_lib.contract import LAYOUTS, MEASUREMENTS, validate  # noqa: E402
from ptycho_lib.io import InputError, read_npz, sha256_file, write_json  # noqa: E402
from ptycho_lib.provenance import record  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw", type=Path, help="raw NPZ file")
    p.add_argument("report", type=Path, help="JSON report to write")
    p.add_argument("--layout", choices=LAYOUTS, default="auto", help="stack order (default: auto)")
    p.add_argument("--measurement", choices=MEASUREMENTS, default="auto",
                   help="what the patterns hold (default: auto)")
    p.add_argument("--sha256", default="", help="expected SHA-256 of the raw file (empty: not checked)")
    a = p.parse_args(argv)
    digest = sha256_file(a.raw) if a.raw.is_file() else ""
    if a.sha256 and digest != a.sha256.lower():
        raise InputError(a.raw, f"SHA-256 {digest} differs from the expected {a.sha256} in the config")
    report = validate(read_npz(a.raw), a.raw, a.layout, a.measurement)
    report["file"] = {"name": a.raw.name, "sha256": digest, "bytes": a.raw.stat().st_size}
    for warning in report["warnings"]:
        print(f"warning: {a.raw}: {warning}", file=sys.stderr)
    write_json(a.report, report)
    record(a.report, "validate", {"raw": a.raw},
           {"layout": a.layout, "measurement": a.measurement, "sha256": a.sha256})


if __name__ == "__main__":
    run(main)
