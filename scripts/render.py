"""render: amplitude | phase PNG of a reconstruction, cropped to the scanned region.

    python scripts/render.py results/recon/fly001.npz results/recon/fly001.png \
        [--title "fly001 - model fly001"] [--dpi 120] [--positions]

A scale bar is drawn when the reconstruction knows its pixel size (`pixel_size_m`,
from a CXI or ptychodus scan); --positions overlays the scan positions on the amplitude.
"""

import argparse
from dataclasses import asdict
from pathlib import Path

from ptycho_lib import config
from ptycho_lib.cli import run
from ptycho_lib.io import atomic_path
from ptycho_lib.provenance import record
from ptycho_lib.reconstruction import Reconstruction
from ptycho_lib.render import render


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recon", type=Path, help="reconstruction NPZ from infer")
    p.add_argument("png", type=Path, help="PNG to write")
    p.add_argument("--title", default=None, help="figure title (default: the file name)")
    config.add_arguments(p, "render")
    a = p.parse_args(argv)
    opts = config.build(a, "render")["render"]
    rec = Reconstruction.load(a.recon)
    with atomic_path(a.png) as tmp:
        render(rec.object, rec.region, a.title or a.recon.stem, tmp, opts.dpi, rec.pixel_size_m,
               (rec.x, rec.y) if opts.positions else None)
    record(a.png, "render", {"recon": a.recon}, {"title": a.title, **asdict(opts)})


if __name__ == "__main__":
    run(main)
