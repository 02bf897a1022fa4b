"""validate: check a raw scan file against the data contract and write a JSON report.

    python scripts/validate.py resources/fly001.npz results/validated/fly001.json \
        [--layout auto] [--measurement auto] [--sha256 HEX]
"""

import argparse
import sys
from pathlib import Path

from ptycho_lib.cli import run
from ptycho_lib import config
from ptycho_lib.contract import validate
from ptycho_lib.io import InputError, read_npz, sha256_file, write_json
from ptycho_lib.provenance import record


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw", type=Path, help="raw NPZ file")
    p.add_argument("report", type=Path, help="JSON report to write")
    config.add_arguments(p, "validate")
    a = p.parse_args(argv)
    opts = config.build(a, "validate")["dataset"]
    digest = sha256_file(a.raw) if a.raw.is_file() else ""
    if opts.sha256 and digest != opts.sha256.lower():
        raise InputError(a.raw, f"SHA-256 {digest} differs from the expected {opts.sha256} in the config")
    report = validate(read_npz(a.raw), a.raw, opts.layout, opts.measurement)
    report["file"] = {"name": a.raw.name, "sha256": digest, "bytes": a.raw.stat().st_size}
    for warning in report["warnings"]:
        print(f"warning: {a.raw}: {warning}", file=sys.stderr)
    write_json(a.report, report)
    record(a.report, "validate", {"raw": a.raw},
           {"layout": opts.layout, "measurement": opts.measurement, "sha256": opts.sha256})


if __name__ == "__main__":
    run(main)
