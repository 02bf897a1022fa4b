"""render: amplitude | phase PNG of a reconstruction, cropped to the scanned region.

    python scripts/render.py results/recon/fly001.npz results/recon/fly001.png \
        [--title "fly001 - model fly001"] [--dpi 120] [--positions]

A scale bar is drawn when the reconstruction knows its pixel size (`pixel_size_m`,
from a CXI or ptychodus scan); --positions overlays the scan positions on the amplitude.
"""

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # _cli; this checkout's ptycho_lib
from _cli import run  # noqa: E402

from ptycho_lib.io import atomic_path, read_npz  # noqa: E402
from ptycho_lib.provenance import record  # noqa: E402
from ptycho_lib.render import render  # noqa: E402
from ptycho_lib.stitch import scanned_region  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recon", type=Path, help="reconstruction NPZ from infer")
    p.add_argument("png", type=Path, help="PNG to write")
    p.add_argument("--title", default=None, help="figure title (default: the file name)")
    p.add_argument("--dpi", type=int, default=120, help="resolution of the PNG (default: 120)")
    p.add_argument("--positions", action=argparse.BooleanOptionalAction, default=False,
                   help="overlay the scan positions on the amplitude (default: off)")
    a = p.parse_args(argv)
    rec = read_npz(a.recon)
    region = scanned_region(rec["xcoords"], rec["ycoords"])
    with atomic_path(a.png) as tmp:
        pixel = float(rec["pixel_size_m"][1]) if "pixel_size_m" in rec else None
        render(rec["object"], region, a.title or a.recon.stem, tmp, a.dpi, pixel,
               (rec["xcoords"], rec["ycoords"]) if a.positions else None)
    record(a.png, "render", {"recon": a.recon}, {"title": a.title, "dpi": a.dpi, "positions": a.positions})


if __name__ == "__main__":
    run(main)
