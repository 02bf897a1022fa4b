"""validate: check a raw scan file against the data contract and write a JSON report.

    python -m scripts.validate resources/fly001.npz results/validated/fly001.json \
        [--layout auto] [--measurement auto] [--sha256 HEX]

The report says what was detected (the key, the stack order, what the patterns
hold), every key's shape and dtype, the counts per pattern, the positions' ranges
and any warnings (duplicate positions, sparse overlap). A file that breaks the
contract stops here with one line naming the problem, or the setting that settles an
ambiguity, and no report is written.
"""

import sys

from ptycho_lib import cli
from ptycho_lib.contract import COPIES, validate
from ptycho_lib.io import InputError, read_npz, sha256_file, write_json
from ptycho_lib.provenance import record


def main(argv):
    a, cfg = cli.parse(cli.parser(__doc__, ("raw", "raw NPZ file"), ("report", "JSON report to write"),
                                  program="validate"), argv)
    opts = cfg["dataset"]
    digest = sha256_file(a.raw) if a.raw.is_file() else ""
    if opts.sha256 and digest != opts.sha256.lower():
        raise InputError(a.raw, f"SHA-256 {digest} differs from the expected {opts.sha256} in the config")
    report = validate(read_npz(a.raw, copies=COPIES), a.raw, opts.layout, opts.measurement, cfg["data"])
    report["file"] = {"name": a.raw.name, "sha256": digest, "bytes": a.raw.stat().st_size}
    for warning in report["warnings"]:
        print(f"warning: {a.raw}: {warning}", file=sys.stderr)
    write_json(a.report, report)
    record(a.report, "validate", {"raw": a.raw},
           {"layout": opts.layout, "measurement": opts.measurement, "sha256": opts.sha256})


if __name__ == "__main__":
    cli.run(main)
