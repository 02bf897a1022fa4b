"""train: fit the physics-informed network on a canonical scan.

    python -m scripts.train --train-data-file results/canonical/fly001.npz \
        --output-dir results/train/fly001 [--config config/config.yaml] [flags]

Writes into --output-dir: best.ckpt (the best epoch by --checkpoint-monitor, what
export reads), last.ckpt (the final epoch), checkpoints/ (the --checkpoint-save-top-k
best), metrics.csv (epoch, step, lr, train_loss, val_loss) and logs/ (--logger).
Settings come from the defaults of ptycho_lib.config, then each --config file, then
the flags below. With --devices N > 1 Lightning's DDP reruns this command line in
N - 1 further processes. Every flag: docs/cli.md.
"""

import argparse
from dataclasses import asdict
from pathlib import Path

from ptycho_lib import cli, config
from ptycho_lib.io import sha256_file
from ptycho_lib.provenance import record
from ptycho_lib.scan import load_scan
from ptycho_lib.training import train

def parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, program="train")
    config.add_flag(p, "--train-data-file", "--train_data_file", type=Path, required=True,
                    help="canonical NPZ to train on")
    config.add_flag(p, "--test-data-file", "--test_data_file", type=Path, default=None,
                    help="canonical NPZ used for validation (default: a held-out band of the training scan)")
    config.add_flag(p, "--output-dir", "--output_dir", type=Path, required=True,
                    help="where the checkpoints, metrics.csv and logs go")
    return p


def main(argv):
    a, cfg = cli.parse(parser(), argv)
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
    cli.run(main)
