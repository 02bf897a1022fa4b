"""loss_curve: PNG of the training and validation loss per epoch from metrics.csv.

    python -m scripts.loss_curve results/train/fly001/metrics.csv results/train/fly001/loss.png \
        [--title "model fly001"] [--dpi 120]
"""


from ptycho_lib import cli
from ptycho_lib.io import InputError, atomic_path
from ptycho_lib.provenance import record
from ptycho_lib.render import loss_curve, read_metrics


def main(argv):
    p = cli.parser(__doc__, ("metrics", "metrics.csv written by train"), ("png", "PNG to write"), program="loss_curve")
    p.add_argument("--title", default=None, help="figure title (default: the folder name)")
    a, cfg = cli.parse(p, argv)
    opts = cfg["render"]
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
    cli.run(main)
