"""train: fit the physics-informed network on a canonical scan.

    python scripts/train.py --train_data_file results/canonical/fly001.npz \
        --output_dir results/train/fly001 [--config config/config.yaml] [flags]

Writes into --output_dir: best.ckpt (the best epoch by --checkpoint-monitor, what
export reads), last.ckpt (the final epoch), checkpoints/ (the --checkpoint-save-top-k
best), metrics.csv (epoch, step, lr, train_loss, val_loss) and logs/ (--logger).
Settings come from the defaults of ptycho_lib.config, then each --config file, then
the flags below. With --devices N > 1 Lightning's DDP reruns this command line in
N - 1 further processes. Every flag: docs/cli.md.
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_data_file", type=Path, required=True, help="canonical NPZ to train on")
    p.add_argument("--test_data_file", type=Path, default=None,
                   help="canonical NPZ used for validation (default: a held-out band of the training scan)")
    p.add_argument("--output_dir", type=Path, required=True, help="where the checkpoints, metrics.csv and logs go")
    config.add_arguments(p, SECTIONS, "train")
    return p


def main(argv):
    a = parser().parse_args(argv)
    cfg = config.build(a, SECTIONS, "train")
    scan = load_scan(a.train_data_file)
    val = load_scan(a.test_data_file) if a.test_data_file else None
    ckpt = train(scan, val, a.output_dir, cfg["data"], cfg["model"], cfg["train"], cfg["execution"],
                 data_sha256=sha256_file(a.train_data_file))
    if ckpt is not None:  # DDP's extra processes write nothing
        inputs = {"train_data": a.train_data_file, **({"test_data": a.test_data_file} if a.test_data_file else {})}
        for written in (ckpt, ckpt.with_name("last.ckpt")):
            record(written, "train", inputs, {k: asdict(v) for k, v in cfg.items()})
    return ckpt


if __name__ == "__main__":
    run(main)
