"""loss_curve: PNG of the training and validation loss per epoch from metrics.csv.

    python scripts/loss_curve.py results/train/fly001/metrics.csv results/train/fly001/loss.png \
        [--title "model fly001"] [--dpi 120]
"""

import argparse
from pathlib import Path

from ptycho_lib import config
from ptycho_lib.cli import run
from ptycho_lib.io import InputError, atomic_path
from ptycho_lib.provenance import record
from ptycho_lib.render import loss_curve, read_metrics


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", type=Path, help="metrics.csv written by train")
    p.add_argument("png", type=Path, help="PNG to write")
    p.add_argument("--title", default=None, help="figure title (default: the folder name)")
    config.add_arguments(p, "loss_curve")
    a = p.parse_args(argv)
    opts = config.build(a, "loss_curve")["render"]
    if not a.metrics.is_file():
        raise InputError(a.metrics, "file not found")
    try:
        metrics = read_metrics(a.metrics)
    except (KeyError, ValueError) as e:
        raise InputError(a.metrics, f"not a metrics table with numeric columns ({e})") from None
    with atomic_path(a.png) as tmp:
        loss_curve(metrics, a.title or a.metrics.parent.name, tmp, opts.dpi)
    record(a.png, "loss_curve", {"metrics": a.metrics}, {"title": a.title, "dpi": opts.dpi})


if __name__ == "__main__":
    run(main)
