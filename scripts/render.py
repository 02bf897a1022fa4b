"""render: amplitude | phase PNG of a reconstruction, cropped to the scanned region;
of several reconstructions of one scan, a row each with shared colour scales.

    python -m scripts.render results/recon/fly001.npz results/recon/fly001.png \
        [--title "fly001 - model fly001"] [--dpi 120] [--positions]
    python -m scripts.render results/{recon,baseline,refined}/fly001.npz results/compare/fly001.png \
        [--labels recon baseline refined]
    python -m scripts.render --probe results/canonical/fly001.npz results/probe/fly001.png

A scale bar is drawn when the reconstruction knows its pixel size (`pixel_size_m`,
from a CXI or ptychodus scan); --positions overlays the scan positions on the amplitude
(one reconstruction only). Several reconstructions share one amplitude and one phase
colour scale (`--phase-limit` fixes the latter), so that they compare by eye. With
--probe the input is a canonical scan and the figure its probe: amplitude, phase and
far-field intensity. Axes are in metres' units when the pixel size is known.
"""

from dataclasses import asdict
from pathlib import Path

from ptycho_lib import cli
from ptycho_lib.io import atomic_path
from ptycho_lib.provenance import record
from ptycho_lib.reconstruction import Reconstruction
from ptycho_lib.render import render, render_probe, render_side_by_side
from ptycho_lib.scan import load_scan


def main(argv):
    p = cli.parser(__doc__, program="render")
    p.add_argument("recon", type=Path, nargs="+", help="reconstruction NPZ(s) of one scan (with --probe: a "
                   "canonical scan NPZ)")
    p.add_argument("png", type=Path, help="PNG to write")
    p.add_argument("--title", default=None, help="figure title (default: the file name)")
    p.add_argument("--labels", nargs="+", default=None,
                   help="row labels of several reconstructions (default: their folders' names)")
    p.add_argument("--probe", action="store_true", help="draw the probe of a canonical scan instead")
    a, cfg = cli.parse(p, argv)
    opts = cfg["render"]
    if a.probe:
        return draw_probe(a.recon, a.png, a.title, opts)
    recs = [Reconstruction.load(path) for path in a.recon]
    labels = a.labels or [path.parent.name for path in a.recon]
    if len(labels) != len(recs):
        raise ValueError(f"--labels gives {len(labels)} labels for {len(recs)} reconstructions")
    with atomic_path(a.png) as tmp:
        if len(recs) == 1:
            rec = recs[0]
            render(rec.object, rec.region, a.title or a.recon[0].stem, tmp, opts.dpi, rec.pixel_size_m,
                   (rec.x, rec.y) if opts.positions else None, opts.phase_limit)
        else:
            render_side_by_side([(label, r.object, r.region) for label, r in zip(labels, recs)],
                                a.title or a.png.stem, tmp, opts.dpi, recs[0].pixel_size_m, opts.phase_limit)
    record(a.png, "render", {f"recon_{i}" if i else "recon": path for i, path in enumerate(a.recon)},
           {"title": a.title, **asdict(opts)})


def draw_probe(paths: list[Path], png: Path, title: str | None, opts) -> None:
    if len(paths) != 1:
        raise ValueError(f"--probe draws the probe of one scan, got {len(paths)} files")
    scan = load_scan(paths[0])
    pixel = scan.geometry.get("pixel_size_m")
    with atomic_path(png) as tmp:
        render_probe(scan.probe, title or f"{paths[0].stem}: probe", tmp, opts.dpi,
                     None if pixel is None else float(pixel[1]))
    record(png, "render", {"data": paths[0]}, {"title": title, **asdict(opts)})


if __name__ == "__main__":
    cli.run(main)
