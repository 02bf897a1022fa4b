"""export: turn a training checkpoint into the self-describing bundle wts.h5.zip.

    python -m scripts.export results/train/fly001/best.ckpt results/models/fly001/wts.h5.zip

The manifest's `checkpoint` entry says which epoch the weights are from and, for
best.ckpt, by which metric it was chosen.
"""

import argparse
from pathlib import Path

from ptycho_lib.bundle import export_checkpoint
from ptycho_lib.cli import run
from ptycho_lib.provenance import record


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="Lightning checkpoint (loaded with weights_only=True)")
    p.add_argument("bundle", type=Path, help="wts.h5.zip to write")
    a = p.parse_args(argv)
    weights_sha256 = export_checkpoint(a.checkpoint, a.bundle)
    record(a.bundle, "export", {"checkpoint": a.checkpoint}, extra={"bundle_weights_sha256": weights_sha256})


if __name__ == "__main__":
    run(main)
