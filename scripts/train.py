"""train: fit the physics-informed network on one canonical scan or several.

    python -m scripts.train --train-data-file results/canonical/fly001.npz \
        --output-dir results/train/fly001 [--config config/config.yaml] [flags]
    python -m scripts.train --train-data-file A.npz B.npz ...            # one model, several scans
    python -m scripts.train --init-model results/models/fly001/wts.h5.zip \
        --train-data-file results/canonical/fly002.npz --max-epochs 3 ...   # adapt a reused model

Several scans (one instrument setting: one pattern size) train one model; each group
of patterns comes from one scan and each scan keeps its own probe and dose in the loss.
--init-model starts from a bundle's weights (its architecture overrides the model
settings) instead of a fresh network: the adaptation of a reused model to a new scan.
--teacher (with one scan) makes that adaptation learn a reconstruction of the scan,
each pattern's patch pulled toward its window (the workflow gives the reused model's
refined reconstruction), instead of fitting the counts.

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
import numpy as np

from ptycho_lib.bundle import load_network
from ptycho_lib.data import teacher_patches
from ptycho_lib.io import InputError, sha256_file
from ptycho_lib.provenance import record
from ptycho_lib.reconstruction import Reconstruction
from ptycho_lib.scan import load_scan
from ptycho_lib.training import train

def parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__, program="train")
    config.add_flag(p, "--train-data-file", "--train_data_file", type=Path, required=True, nargs="+",
                    help="canonical NPZ(s) to train on")
    config.add_flag(p, "--init-model", type=Path, default=None,
                    help="model bundle whose weights training starts from (adaptation); default: a fresh network")
    config.add_flag(p, "--teacher", type=Path, default=None,
                    help="reconstruction NPZ of the one training scan whose windows the network learns instead of "
                         "fitting the counts (a taught adaptation; the workflow gives the reused model's refined "
                         "reconstruction)")
    config.add_flag(p, "--test-data-file", "--test_data_file", type=Path, default=None,
                    help="canonical NPZ used for validation (default: a held-out band of every training scan)")
    config.add_flag(p, "--output-dir", "--output_dir", type=Path, required=True,
                    help="where the checkpoints, metrics.csv and logs go")
    return p


def main(argv):
    a, cfg = cli.parse(parser(), argv)
    scans = [load_scan(path) for path in a.train_data_file]
    val = load_scan(a.test_data_file) if a.test_data_file else None
    init = None
    if a.init_model:
        net, _ = load_network(a.init_model, n=scans[0].n, gridsize=cfg["data"].gridsize)
        init = net.state_dict()
        cfg["model"] = net.settings(cfg["model"])
    teacher = taught_patches(a.teacher, scans) if a.teacher else None
    ckpt = train(scans, val, a.output_dir, cfg["data"], cfg["model"], cfg["train"], cfg["execution"],
                 data_sha256=sha256_file(a.train_data_file[0]), init=init, teacher=teacher)
    if ckpt is not None:  # DDP's extra processes write nothing
        inputs = {"train_data" + (f"_{i + 1}" if i else ""): path for i, path in enumerate(a.train_data_file)}
        for role, path in (("test_data", a.test_data_file), ("init_model", a.init_model), ("teacher", a.teacher)):
            if path:
                inputs[role] = path
        for written in (ckpt, ckpt.with_name("last.ckpt")):
            record(written, "train", inputs, {k: asdict(v) for k, v in cfg.items()})
    return ckpt


def taught_patches(path, scans):
    """The patches the reconstruction `path` of the one training scan teaches."""
    if len(scans) != 1:
        raise InputError(path, f"a teacher teaches one scan, not {len(scans)}")
    rec, scan = Reconstruction.load(path), scans[0]
    if len(rec.x) != len(scan.x) or not (np.allclose(rec.y - rec.origin[0], scan.y)
                                         and np.allclose(rec.x - rec.origin[1], scan.x)):
        raise InputError(path, "its positions are not the training scan's: not a reconstruction of that scan")
    try:
        return teacher_patches(rec.object, rec.y, rec.x, scan.n)
    except ValueError as e:
        raise InputError(path, str(e)) from None


if __name__ == "__main__":
    cli.run(main)
