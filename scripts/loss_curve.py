"""loss_curve: PNG of the training and validation loss per epoch from metrics.csv.

    python scripts/loss_curve.py results/train/fly001/metrics.csv results/train/fly001/loss.png \
        [--title "model fly001"] [--dpi 120]
"""

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _cli; this checkout's ptycho_lib
from _cli import run  # noqa: E402

from ptycho_lib.io import InputError, atomic_path  # noqa: E402
from ptycho_lib.provenance import record  # noqa: E402
from ptycho_lib.render import loss_curve, read_metrics  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", type=Path, help="metrics.csv written by train")
    p.add_argument("png", type=Path, help="PNG to write")
    p.add_argument("--title", default=None, help="figure title (default: the folder name)")
    p.add_argument("--dpi", type=int, default=120, help="resolution of the PNG (default: 120)")
    a = p.parse_args(argv)
    if not a.metrics.is_file():
        raise InputError(a.metrics, "file not found")
    try:
        metrics = read_metrics(a.metrics)
    except (KeyError, ValueError) as e:
        raise InputError(a.metrics, f"not a metrics table with numeric columns ({e})") from None
    with atomic_path(a.png) as tmp:
        loss_curve(metrics, a.title or a.metrics.parent.name, tmp, a.dpi)
    record(a.png, "loss_curve", {"metrics": a.metrics}, {"title": a.title, "dpi": a.dpi})


if __name__ == "__main__":
    run(main)
