"""train: fit the physics-informed network on a canonical scan.

    python scripts/train.py --train_data_file results/canonical/fly001.npz \
        --output_dir results/train/fly001 [--config config/config.yaml] [flags]

Writes last.ckpt and metrics.csv into --output_dir. Settings come from the defaults
of ptycho_lib.config, then --config, then the flags below.
"""

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _cli; this checkout's ptycho_lib
from _cli import run  # noqa: E402

from ptycho_lib import config  # noqa: E402
from ptycho_lib.data import load_scan  # noqa: E402
from ptycho_lib.io import sha256_file  # noqa: E402
from ptycho_lib.provenance import record  # noqa: E402
from ptycho_lib.training import train  # noqa: E402

SECTIONS = ("data", "model", "train", "execution")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_data_file", type=Path, required=True, help="canonical NPZ to train on")
    p.add_argument("--test_data_file", type=Path, default=None,
                   help="canonical NPZ used for validation (default: a held-out band of the training scan)")
    p.add_argument("--output_dir", type=Path, required=True, help="where last.ckpt and metrics.csv go")
    config.add_arguments(p, SECTIONS)
    a = p.parse_args(argv)
    cfg = config.build(a, SECTIONS)
    scan = load_scan(a.train_data_file)
    val = load_scan(a.test_data_file) if a.test_data_file else None
    ckpt = train(scan, val, a.output_dir, cfg["data"], cfg["model"], cfg["train"], cfg["execution"],
                 data_sha256=sha256_file(a.train_data_file))
    inputs = {"train_data": a.train_data_file, **({"test_data": a.test_data_file} if a.test_data_file else {})}
    record(ckpt, "train", inputs, {k: asdict(v) for k, v in cfg.items()})


if __name__ == "__main__":
    run(main)
