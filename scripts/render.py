"""render: amplitude | phase PNG of a reconstruction, cropped to the scanned region.

    python -m scripts.render results/recon/fly001.npz results/recon/fly001.png \
        [--title "fly001 - model fly001"] [--dpi 120] [--positions]

A scale bar is drawn when the reconstruction knows its pixel size (`pixel_size_m`,
from a CXI or ptychodus scan); --positions overlays the scan positions on the amplitude.
"""

from dataclasses import asdict

from ptycho_lib import cli
from ptycho_lib.io import atomic_path
from ptycho_lib.provenance import record
from ptycho_lib.reconstruction import Reconstruction
from ptycho_lib.render import render


def main(argv):
    p = cli.parser(__doc__, ("recon", "reconstruction NPZ"), ("png", "PNG to write"), program="render")
    p.add_argument("--title", default=None, help="figure title (default: the file name)")
    a, cfg = cli.parse(p, argv)
    opts = cfg["render"]
    rec = Reconstruction.load(a.recon)
    with atomic_path(a.png) as tmp:
        render(rec.object, rec.region, a.title or a.recon.stem, tmp, opts.dpi, rec.pixel_size_m,
               (rec.x, rec.y) if opts.positions else None, opts.phase_limit)
    record(a.png, "render", {"recon": a.recon}, {"title": a.title, **asdict(opts)})


if __name__ == "__main__":
    cli.run(main)
